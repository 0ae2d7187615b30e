"""The mock provider's options under ``[providers.<name>]`` (``type = "mock"``)."""

from __future__ import annotations

from typing import Literal

import attrs

ErrorKind = Literal[
    "rate_limit",
    "server",
    "overloaded",
    "timeout",
    "network",
    "authentication",
    "invalid_request",
    "context_window",
    "mid_stream",
]
ERROR_KINDS: tuple[str, ...] = (
    "rate_limit",
    "server",
    "overloaded",
    "timeout",
    "network",
    "authentication",
    "invalid_request",
    "context_window",
    "mid_stream",
)


@attrs.frozen(kw_only=True)
class MockSettings:
    """Every key is optional. Times are seconds; the defaults answer instantly."""

    seed: int = 0
    latency: float = 0.0  # before anything arrives
    time_to_first_token: float = 0.0  # extra wait before the first streamed token
    tokens_per_second: float = 0.0  # 0: no pacing
    output_tokens: int = 24  # length of generated replies (words)
    failure_rate: float = 0.0  # share of calls that fail, 0..1
    error_kinds: list[ErrorKind] = attrs.field(factory=lambda: ["rate_limit", "server"])
    retry_after: float | None = 1.0  # what a simulated 429 asks for
    tool_calls: bool = True  # call a tool when tools are offered
    models: list[str] = attrs.field(factory=lambda: ["echo", "chat", "embed"])
    embedding_dimensions: int = 8
    #: HTTP-style response headers the simulated provider answers with (names are
    #: lower-cased), on every response, stream (a MetadataEvent at its start),
    #: embedding and simulated error: rate-limit headers for testing a limiter,
    #: say ``{"x-ratelimit-remaining-requests" = "99"}``.
    headers: dict[str, str] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError("failure_rate must be between 0 and 1")
        for value, key in (
            (self.latency, "latency"),
            (self.tokens_per_second, "tokens_per_second"),
            (self.time_to_first_token, "time_to_first_token"),
        ):
            if value < 0:
                raise ValueError(f"{key} must not be negative")
