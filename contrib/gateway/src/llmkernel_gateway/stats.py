"""Per-deployment numbers for the status page: requests, errors, latency and
time-to-first-token percentiles over the recent requests, cost today (UTC).

Kept per worker process, in memory; ``/metrics`` is the place for whole-server and
historical numbers. When a routing plugin reports breaker states through
``kernel.stats()``, they are shown beside these.
"""

from __future__ import annotations

import datetime
from collections import deque
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import attrs

WINDOW = 1000  # latencies kept per deployment for percentiles


def _today() -> datetime.date:
    return datetime.datetime.now(datetime.UTC).date()


def percentile(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile of ``values`` (``share`` in 0..1)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))
    return ordered[rank]


@attrs.define(kw_only=True)
class DeploymentStats:
    requests: int = 0
    errors: int = 0
    cached: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_today: Decimal = Decimal(0)
    unpriced: int = 0
    day: datetime.date = attrs.field(factory=_today)
    latencies: deque[float] = attrs.field(factory=lambda: deque(maxlen=WINDOW))
    ttfts: deque[float] = attrs.field(factory=lambda: deque(maxlen=WINDOW))

    def snapshot(self) -> dict[str, Any]:
        latencies = list(self.latencies)
        ttfts = list(self.ttfts)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": (self.errors / self.requests) if self.requests else 0.0,
            "cached": self.cached,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "latency_p50_ms": _ms(percentile(latencies, 0.50)),
            "latency_p95_ms": _ms(percentile(latencies, 0.95)),
            "ttft_p50_ms": _ms(percentile(ttfts, 0.50)),
            "ttft_p95_ms": _ms(percentile(ttfts, 0.95)),
            "cost_today": str(self.cost_today),
            "unpriced_requests": self.unpriced,
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


@attrs.define
class Stats:
    """Numbers per deployment (``provider/model``)."""

    deployments: dict[str, DeploymentStats] = attrs.field(factory=dict)
    started: float = 0.0

    def record(
        self,
        deployment: str,
        *,
        latency: float,
        ok: bool,
        ttft: float | None = None,
        usage: Any = None,
        cost: Decimal | None = None,
        cached: bool = False,
    ) -> None:
        stats = self.deployments.get(deployment)
        if stats is None:
            stats = self.deployments[deployment] = DeploymentStats()
        today = _today()
        if stats.day != today:
            stats.day = today
            stats.cost_today = Decimal(0)
        stats.requests += 1
        stats.latencies.append(latency)
        if not ok:
            stats.errors += 1
            return
        if ttft is not None:
            stats.ttfts.append(ttft)
        if cached:
            stats.cached += 1
        if usage is not None:
            stats.input_tokens += usage.input_tokens
            stats.output_tokens += usage.output_tokens
        if cost is None:
            stats.unpriced += 1
        else:
            stats.cost_today += cost

    def snapshot(self, kernel_stats: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every deployment's numbers, with what ``kernel.stats()`` says about it
        (breaker state and more) under ``kernel``."""
        from_kernel: Mapping[str, Any] = (kernel_stats or {}).get("deployments", {}) or {}
        names = sorted(set(self.deployments) | set(from_kernel))
        rows = {}
        for name in names:
            row = (
                self.deployments[name].snapshot()
                if name in self.deployments
                else DeploymentStats().snapshot()
            )
            extra = from_kernel.get(name)
            if isinstance(extra, Mapping):
                row["kernel"] = dict(extra)
                breaker = extra.get("breaker") or extra.get("state")
                # llmkernel-routing reports {"state": "closed", "reason": ...}
                row["breaker"] = breaker.get("state") if isinstance(breaker, Mapping) else breaker
            else:
                row["breaker"] = None
            rows[name] = row
        return rows


__all__ = ["DeploymentStats", "Stats", "percentile"]
