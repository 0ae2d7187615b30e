"""The rate limiter's settings: the ``[plugin.ratelimit]`` table."""

from __future__ import annotations

from typing import Literal

import attrs

__all__ = ["DIMENSIONS", "LimitRule", "RateLimitSettings"]

Dimension = Literal["provider", "model", "tenant", "key"]
DIMENSIONS: tuple[str, ...] = ("provider", "model", "tenant", "key")


@attrs.frozen(kw_only=True)
class LimitRule:
    """``[plugin.ratelimit.limits."<pattern>"]``: limits for the deployments whose
    ``provider/model`` matches the pattern (``*`` and ``?`` wildcards; the provider
    part may be an instance name or a provider type).

    ``per`` splits the limit into one bucket per value of each dimension named:
    ``["model"]`` gives every matching model its own limit, ``["tenant"]`` every
    tenant, ``["key"]`` every API key of the gateway. With no ``per``, every
    matching deployment shares one bucket (a provider-wide limit). ``key`` or
    ``tenant`` scope the rule to one key's or tenant's calls (a gateway key's own
    ``rate_limit`` becomes such a rule); ``pattern`` then says which deployments,
    the table's name being a label.
    """

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    window: float = 60.0
    per: list[Dimension] = attrs.field(factory=list)
    #: the deployments it applies to, when the table's name is only a label
    pattern: str | None = None
    #: only calls of this gateway key (``metadata["key"]``) or tenant
    key: str | None = None
    tenant: str | None = None
    #: this rule's own ``mode`` (default: ``[plugin.ratelimit] mode``)
    mode: Literal["wait", "reject"] | None = None

    def __attrs_post_init__(self) -> None:
        if self.requests_per_minute is None and self.tokens_per_minute is None:
            raise ValueError("a limit needs requests_per_minute or tokens_per_minute")
        for value, key in (
            (self.requests_per_minute, "requests_per_minute"),
            (self.tokens_per_minute, "tokens_per_minute"),
        ):
            if value is not None and value <= 0:
                raise ValueError(f"{key} must be positive")
        if self.window <= 0:
            raise ValueError("window must be positive")

    def amount(self, per_minute: float) -> float:
        """The allowance in one window."""
        return per_minute * self.window / 60.0


@attrs.frozen(kw_only=True)
class RateLimitSettings:
    """``mode = "wait"`` waits for room (never past the call's deadline);
    ``"reject"`` refuses at once with ``retry_after`` so routing can try another
    candidate. ``learn_from_headers`` also limits by what providers report left.
    ``store = "file"`` shares the counts with every process using the same ``path``
    (default ``$XDG_STATE_HOME/llmkernel/ratelimit.buckets``).
    ``shared = false`` keeps the counts in this process even when ``[redis]`` is
    set (by default they are fleet-wide then)."""

    mode: Literal["wait", "reject"] = "wait"
    learn_from_headers: bool = True
    shared: bool = True
    limits: dict[str, LimitRule] = attrs.field(factory=dict)
    #: where the counts live: this process (``memory``), or a file every process
    #: of this machine that names it shares (``file``, at ``path``)
    store: Literal["memory", "file"] = "memory"
    path: str = ""
    capacity: int = 4096  # buckets the file holds

    def __attrs_post_init__(self) -> None:
        if self.capacity < 16:
            raise ValueError("capacity must be at least 16")
