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

import re
from collections.abc import Mapping
from datetime import datetime

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


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str) -> float | None:
    """A Go-style duration (``"6m0s"``, ``"1.5s"``, ``"20ms"``) or plain seconds, in
    seconds; ``None`` when it is neither."""
    text = text.strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    total = 0.0
    position = 0
    for match in _DURATION.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    return total if position == len(text) else None


def _reset_at(text: str, now_epoch: float) -> float | None:
    """An RFC 3339 timestamp as seconds from ``now_epoch`` (never negative)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return parse_duration(text)
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now_epoch)


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
    found: dict[str, Allowance | None] = {}
    for kind in ("requests", "tokens"):
        if f"x-ratelimit-remaining-{kind}" in headers:
            reset_text = headers.get(f"x-ratelimit-reset-{kind}")
            found[kind] = _allowance(
                headers.get(f"x-ratelimit-limit-{kind}"),
                headers.get(f"x-ratelimit-remaining-{kind}"),
                parse_duration(reset_text) if reset_text else None,
            )
    for kind in ("requests", "tokens", "input-tokens", "output-tokens"):
        prefix = f"anthropic-ratelimit-{kind}"
        if f"{prefix}-remaining" in headers:
            reset_text = headers.get(f"{prefix}-reset")
            found[kind.replace("-", "_")] = _allowance(
                headers.get(f"{prefix}-limit"),
                headers.get(f"{prefix}-remaining"),
                _reset_at(reset_text, now_epoch) if reset_text else None,
            )
    return RateLimitHeaders(**found)
