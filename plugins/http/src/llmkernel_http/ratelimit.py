"""Rate-limit headers of OpenAI-style and Anthropic-style APIs in one shape.

OpenAI (and Groq, Together, OpenRouter... that copy it) answers::

    x-ratelimit-limit-requests: 10000        x-ratelimit-limit-tokens: 2000000
    x-ratelimit-remaining-requests: 9999     x-ratelimit-remaining-tokens: 1999990
    x-ratelimit-reset-requests: 6ms          x-ratelimit-reset-tokens: 6m0s

(resets are durations: ``1s``, ``20ms``, ``6m0s``, ``1h2m3.5s``). Anthropic answers::

    anthropic-ratelimit-requests-limit: 50
    anthropic-ratelimit-requests-remaining: 49
    anthropic-ratelimit-requests-reset: 2025-01-01T00:00:01Z     (RFC 3339)
    anthropic-ratelimit-tokens-limit / -remaining / -reset       (input + output)

:func:`parse_ratelimit_headers` reads either into :class:`RateLimitInfo`, with every
reset in seconds from now. A rate limiter learns from it (``Outcome.headers``,
``ProviderError.headers``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import datetime

import attrs

__all__ = ["RateLimitInfo", "parse_ratelimit_headers", "parse_reset_duration", "parse_reset_time"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


@attrs.frozen(kw_only=True)
class RateLimitInfo:
    """What the provider said about its limits; ``None`` where it said nothing.

    ``*_reset`` are seconds from now until the window refills (never negative).
    ``retry_after`` is the ``Retry-After`` header's seconds, when sent.
    """

    requests_limit: int | None = None
    requests_remaining: int | None = None
    requests_reset: float | None = None
    tokens_limit: int | None = None
    tokens_remaining: int | None = None
    tokens_reset: float | None = None
    retry_after: float | None = None

    @property
    def empty(self) -> bool:
        """True when no rate-limit header was found."""
        return all(getattr(self, a.name) is None for a in attrs.fields(RateLimitInfo))


def parse_reset_duration(value: str) -> float | None:
    """OpenAI's reset duration, Go-style (``"6m0s"``, ``"1s"``, ``"20ms"``,
    ``"1h2m3.5s"``), or a bare number of seconds, in seconds; ``None`` when unreadable."""
    text = value.strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    total, end = 0.0, 0
    for match in _DURATION.finditer(text):
        if match.start() != end:
            return None
        number, unit = float(match.group(1)), match.group(2)
        total += number * _UNITS[unit]
        end = match.end()
    return total if end == len(text) and end else None


def parse_reset_time(value: str, now: float) -> float | None:
    """An RFC 3339 time (Anthropic's resets) as seconds from ``now`` (epoch seconds),
    never negative; a duration also works; ``None`` when unreadable."""
    text = value.strip()
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return parse_reset_duration(text)
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value.strip()))
    except ValueError:
        return None


def parse_ratelimit_headers(
    headers: Mapping[str, str], *, now: float | None = None
) -> RateLimitInfo:
    """The rate-limit state in ``headers`` (lower-case names, as on
    ``Response.headers``), OpenAI's or Anthropic's; empty when neither is there.

    Anthropic's ``tokens`` headers are used (input and output together); when only
    its ``input-tokens``/``output-tokens`` pairs are sent, the input ones are.
    """
    get = headers.get
    moment = time.time() if now is None else now
    retry_after = None
    if get("retry-after"):
        from llmkernel_http.errors import parse_retry_after

        retry_after = parse_retry_after(headers, now=moment)
    if any(name.startswith("anthropic-ratelimit-") for name in headers):
        combined = any(
            get(f"anthropic-ratelimit-tokens-{part}") for part in ("limit", "remaining", "reset")
        )
        tokens = "tokens" if combined else "input-tokens"

        def reset(kind: str) -> float | None:
            value = get(f"anthropic-ratelimit-{kind}-reset")
            return parse_reset_time(value, moment) if value else None

        return RateLimitInfo(
            requests_limit=_int(get("anthropic-ratelimit-requests-limit")),
            requests_remaining=_int(get("anthropic-ratelimit-requests-remaining")),
            requests_reset=reset("requests"),
            tokens_limit=_int(get(f"anthropic-ratelimit-{tokens}-limit")),
            tokens_remaining=_int(get(f"anthropic-ratelimit-{tokens}-remaining")),
            tokens_reset=reset(tokens),
            retry_after=retry_after,
        )

    def duration(name: str) -> float | None:
        value = get(name)
        return parse_reset_duration(value) if value else None

    return RateLimitInfo(
        requests_limit=_int(get("x-ratelimit-limit-requests")),
        requests_remaining=_int(get("x-ratelimit-remaining-requests")),
        requests_reset=duration("x-ratelimit-reset-requests"),
        tokens_limit=_int(get("x-ratelimit-limit-tokens")),
        tokens_remaining=_int(get("x-ratelimit-remaining-tokens")),
        tokens_reset=duration("x-ratelimit-reset-tokens"),
        retry_after=retry_after,
    )
