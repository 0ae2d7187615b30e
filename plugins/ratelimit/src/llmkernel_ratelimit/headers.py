"""Providers' rate-limit response headers, read into one shape.

- OpenAI (and OpenAI-compatible servers such as Groq): ``x-ratelimit-limit-requests``,
  ``x-ratelimit-remaining-requests``, ``x-ratelimit-reset-requests`` and the same
  for ``-tokens``; resets are Go-style durations (``"1s"``, ``"6m0s"``, ``"12ms"``)
  until the limit is whole again.
- Anthropic: ``anthropic-ratelimit-requests-limit``/``-remaining``/``-reset`` and the
  same for ``tokens``, ``input-tokens`` and ``output-tokens``; resets are RFC 3339
  timestamps.

Negative or missing numbers (Azure sends ``-1``) mean unknown. Header names are
lower case, as the kernel gives them.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

__all__ = [
    "Allowance",
    "RateLimitHeaders",
    "has_rate_headers",
    "parse_duration",
    "parse_headers",
]


@attrs.frozen(kw_only=True)
class Allowance:
    """What a provider says is left: ``remaining`` of ``limit`` until ``reset``
    seconds from now (when the whole limit is back)."""

    limit: int | None = None
    remaining: int
    reset: float | None = None


@attrs.frozen(kw_only=True)
class RateLimitHeaders:
    requests: Allowance | None = None
    tokens: Allowance | None = None
    input_tokens: Allowance | None = None
    output_tokens: Allowance | None = None

    def __bool__(self) -> bool:
        return any((self.requests, self.tokens, self.input_tokens, self.output_tokens))


def parse_duration(text: str) -> float | None:
    """A Go-style duration (``"6m0s"``, ``"1.5s"``, ``"20ms"``) or plain seconds, in
    seconds; ``None`` when it is neither (``llmkernel_http.parse_reset_duration``,
    imported on first use: ``llmkernel_http`` imports httpx)."""
    from llmkernel_http import parse_reset_duration

    return parse_reset_duration(text)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(float(value.strip()))
    except ValueError:
        return None
    return number if number >= 0 else None


def _allowance(limit: str | None, remaining: str | None, reset: float | None) -> Allowance | None:
    left = _int(remaining)
    if left is None:
        return None
    return Allowance(limit=_int(limit), remaining=left, reset=reset)


_REMAINING = (
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-tokens-remaining",
    "anthropic-ratelimit-input-tokens-remaining",
    "anthropic-ratelimit-output-tokens-remaining",
)


def has_rate_headers(headers: Mapping[str, str]) -> bool:
    """Whether ``headers`` say anything :func:`parse_headers` reads (a cheap test
    for the common response without them)."""
    return any(name in headers for name in _REMAINING)


def parse_headers(headers: Mapping[str, str], now_epoch: float) -> RateLimitHeaders:
    """The rate-limit facts in ``headers`` (lower-case names)."""
    from llmkernel_http import parse_reset_duration, parse_reset_time

    found: dict[str, Allowance | None] = {}
    for kind in ("requests", "tokens"):
        if f"x-ratelimit-remaining-{kind}" in headers:
            reset_text = headers.get(f"x-ratelimit-reset-{kind}")
            found[kind] = _allowance(
                headers.get(f"x-ratelimit-limit-{kind}"),
                headers.get(f"x-ratelimit-remaining-{kind}"),
                parse_reset_duration(reset_text) if reset_text else None,
            )
    for kind in ("requests", "tokens", "input-tokens", "output-tokens"):
        prefix = f"anthropic-ratelimit-{kind}"
        if f"{prefix}-remaining" in headers:
            reset_text = headers.get(f"{prefix}-reset")
            found[kind.replace("-", "_")] = _allowance(
                headers.get(f"{prefix}-limit"),
                headers.get(f"{prefix}-remaining"),
                parse_reset_time(reset_text, now_epoch) if reset_text else None,
            )
    return RateLimitHeaders(**found)
