"""Live statistics per deployment (provider instance + model), kept cheaply in memory.

Fed by the end hooks (one update per attempt) and the gate (in-flight counts); read
by strategies (:attr:`DeploymentStats.in_flight`, :attr:`DeploymentStats.ewma_latency`,
:attr:`DeploymentStats.ewma_ttft`) and by ``kernel.stats()``. Every structure is
bounded: two percentile sketches and a ring of per-minute slots for the last hour.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import attrs

from llmkernel_routing.sketch import DEFAULT_ACCURACY, Sketch

#: Characters of an error message kept as ``last_error``.
_MESSAGE_CHARS = 240


@attrs.define(kw_only=True, eq=False)
class Minute:
    """One minute of traffic on the timeline."""

    minute: int  # epoch seconds at the start of the minute
    requests: int = 0
    successes: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)
    latency_total: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "minute": self.minute,
            "requests": self.requests,
            "successes": self.successes,
            "errors": self.errors,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost": str(self.cost),
            "mean_latency_ms": round(self.latency_total / self.successes * 1000, 2)
            if self.successes
            else None,
        }


@attrs.define(kw_only=True, eq=False)
class Timeline:
    """Per-minute counts for the last ``minutes`` minutes, in a fixed-size ring."""

    minutes: int = 60
    _slots: dict[int, Minute] = attrs.field(factory=dict)  # minute index -> slot

    def slot(self, now: float) -> Minute:
        index = int(now // 60)
        ring = index % self.minutes
        slot = self._slots.get(ring)
        if slot is None or slot.minute != index * 60:
            slot = self._slots[ring] = Minute(minute=index * 60)
        return slot

    def recent(self, now: float) -> list[dict[str, Any]]:
        """The minutes with traffic within the window, oldest first."""
        oldest = (int(now // 60) - self.minutes + 1) * 60
        return [
            s.as_dict()
            for s in sorted(self._slots.values(), key=lambda s: s.minute)
            if s.minute >= oldest
        ]


@attrs.define(kw_only=True, eq=False)
class DeploymentStats:
    """Counters for one deployment. ``requests`` counts attempts sent upstream
    (retries included): what the provider saw."""

    key: str  # "provider/model"
    requests: int = 0
    successes: int = 0
    errors: int = 0
    errors_by_kind: dict[str, int] = attrs.field(factory=dict)
    refused: int = 0
    refused_by_kind: dict[str, int] = attrs.field(factory=dict)
    cancelled: int = 0
    abandoned: int = 0
    #: calls that left this deployment out before any attempt, by filter
    skipped: dict[str, int] = attrs.field(factory=dict)
    in_flight: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)
    unpriced: int = 0
    latency: Sketch = attrs.field(factory=lambda: Sketch(relative_accuracy=DEFAULT_ACCURACY))
    ttft: Sketch = attrs.field(factory=lambda: Sketch(relative_accuracy=DEFAULT_ACCURACY))
    #: Exponentially weighted moving averages (seconds) and when each was last fed
    #: (monotonic): what the latency strategy reads.
    ewma_latency: float | None = None
    ewma_ttft: float | None = None
    latency_at: float | None = None
    ttft_at: float | None = None
    last_error: dict[str, Any] | None = None
    last_success_at: float | None = None  # epoch
    timeline: Timeline = attrs.field(factory=Timeline)

    def feed_latency(self, seconds: float, alpha: float, now: float) -> None:
        prior = self.ewma_latency
        self.ewma_latency = seconds if prior is None else prior + alpha * (seconds - prior)
        self.latency_at = now

    def feed_ttft(self, seconds: float, alpha: float, now: float) -> None:
        prior = self.ewma_ttft
        self.ewma_ttft = seconds if prior is None else prior + alpha * (seconds - prior)
        self.ttft_at = now

    def record(
        self,
        *,
        status: str,
        wall: float,
        kind: str = "",
        message: str = "",
        latency: float | None = None,
        first_event_latency: float | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost: Decimal | None = None,
    ) -> None:
        """One attempt ended (``status`` as in ``Outcome.status``)."""
        if status == "refused":
            self.refused += 1
            kind = kind or "refused"
            self.refused_by_kind[kind] = self.refused_by_kind.get(kind, 0) + 1
            return
        self.requests += 1
        minute = self.timeline.slot(wall)
        minute.requests += 1
        if first_event_latency is not None:
            self.ttft.add(first_event_latency)
        if status == "ok":
            self.successes += 1
            minute.successes += 1
            self.last_success_at = wall
            if latency is not None:
                self.latency.add(latency)
                minute.latency_total += latency
            self.input_tokens += input_tokens
            self.output_tokens += output_tokens
            minute.input_tokens += input_tokens
            minute.output_tokens += output_tokens
            if cost is None:
                self.unpriced += 1
            else:
                self.cost += cost
                minute.cost += cost
        elif status == "error":
            self.errors += 1
            minute.errors += 1
            kind = kind or "error"
            self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1
            self.last_error = {"kind": kind, "message": message[:_MESSAGE_CHARS], "at": wall}
        elif status == "cancelled":
            self.cancelled += 1
        else:
            self.abandoned += 1
            self.input_tokens += input_tokens
            self.output_tokens += output_tokens
            if cost is not None:
                self.cost += cost

    def snapshot(self, wall: float, *, timeline: bool = True) -> dict[str, Any]:
        """Plain data (latencies in milliseconds, money as a string)."""
        out: dict[str, Any] = {
            "requests": self.requests,
            "successes": self.successes,
            "errors": self.errors,
            "errors_by_kind": dict(sorted(self.errors_by_kind.items())),
            "refused": self.refused,
            "refused_by_kind": dict(sorted(self.refused_by_kind.items())),
            "cancelled": self.cancelled,
            "abandoned": self.abandoned,
            "skipped": dict(sorted(self.skipped.items())),
            "in_flight": self.in_flight,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost": str(self.cost),
            "unpriced": self.unpriced,
            "latency_ms": self.latency.summary(),
            "ttft_ms": self.ttft.summary(),
            "ewma_latency_ms": _ms(self.ewma_latency),
            "ewma_ttft_ms": _ms(self.ewma_ttft),
            "last_error": dict(self.last_error) if self.last_error else None,
            "last_success_at": self.last_success_at,
        }
        if timeline:
            out["timeline"] = self.timeline.recent(wall)
        return out


@attrs.define(kw_only=True, eq=False)
class CallTotals:
    """Calls as the user saw them (one per ``chat``/``stream``/``embed``)."""

    calls: int = 0
    by_status: dict[str, int] = attrs.field(factory=dict)
    cached: int = 0
    errors_by_kind: dict[str, int] = attrs.field(factory=dict)
    attempts: int = 0
    fallbacks: int = 0  # calls answered by another candidate than the first tried

    def record(
        self,
        *,
        status: str,
        kind: str = "",
        cached: bool = False,
        attempts: int = 0,
        fell_back: bool = False,
    ) -> None:
        self.calls += 1
        self.by_status[status] = self.by_status.get(status, 0) + 1
        if cached:
            self.cached += 1
        if status in ("error", "refused") and kind:
            self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1
        self.attempts += attempts
        if fell_back:
            self.fallbacks += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "by_status": dict(sorted(self.by_status.items())),
            "cached": self.cached,
            "errors_by_kind": dict(sorted(self.errors_by_kind.items())),
            "attempts": self.attempts,
            "fallbacks": self.fallbacks,
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None or math.isnan(seconds) else round(seconds * 1000, 2)


__all__ = ["CallTotals", "DeploymentStats", "Minute", "Timeline"]
