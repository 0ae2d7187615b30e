"""Per-deployment numbers for the status page, read from the Prometheus metrics:
with ``--workers N`` the page shows the same whole-server totals a scrape does.

Per deployment (``provider/model``, bounded like the metrics' labels): attempts
sent to it and how many failed, latency and time-to-first-token percentiles
(estimated from the histograms' buckets, as Prometheus' ``histogram_quantile``
does), cost today (UTC) and the breaker's state (the worst of the workers').
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from llmkernel_gateway.metrics import BREAKER_STATES

__all__ = ["bucket_quantile", "deployment_rows"]

_STATE_NAMES = {value: name for name, value in BREAKER_STATES.items()}


def bucket_quantile(share: float, buckets: list[tuple[float, float]]) -> float | None:
    """The ``share`` quantile (0..1) of a histogram given as ``(upper bound,
    cumulative count)`` pairs in order, the last one ``+Inf``: linear within the
    bucket it falls in; the highest finite bound when it falls in ``+Inf``."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = share * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _key(labels: dict[str, str]) -> str | None:
    provider, model = labels.get("provider", ""), labels.get("model", "")
    if not model:
        return None
    return f"{provider}/{model}" if provider else model


class _Row:
    def __init__(self) -> None:
        self.attempts = 0.0
        self.errors = 0.0
        self.latency: dict[float, float] = {}
        self.ttft: dict[float, float] = {}
        self.cost_today = 0.0
        self.state: int | None = None

    def as_dict(self) -> dict[str, Any]:
        attempts = int(self.attempts)
        return {
            "requests": attempts,
            "errors": int(self.errors),
            "error_rate": (self.errors / self.attempts) if self.attempts else 0.0,
            "latency_p50_ms": _ms(bucket_quantile(0.5, sorted(self.latency.items()))),
            "latency_p95_ms": _ms(bucket_quantile(0.95, sorted(self.latency.items()))),
            "ttft_p50_ms": _ms(bucket_quantile(0.5, sorted(self.ttft.items()))),
            "ttft_p95_ms": _ms(bucket_quantile(0.95, sorted(self.ttft.items()))),
            "cost_today": _money(self.cost_today),
            "breaker": _STATE_NAMES.get(self.state) if self.state is not None else None,
        }


def _money(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text or "0"


def deployment_rows(families: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """The status page's rows, by deployment, from the metric families of a scrape."""
    rows: dict[str, _Row] = {}

    def row(labels: dict[str, str]) -> _Row | None:
        key = _key(labels)
        if key is None:
            return None
        found = rows.get(key)
        if found is None:
            found = rows[key] = _Row()
        return found

    for family in families:
        name = family.name
        for sample in family.samples:
            labels = sample.labels
            if name == "llmkernel_gateway_attempts" and sample.name.endswith("_total"):
                outcome = labels.get("outcome")
                if outcome == "refused":
                    continue  # nothing was sent
                target = row(labels)
                if target is not None:
                    target.attempts += sample.value
                    if outcome == "error":
                        target.errors += sample.value
            elif name in (
                "llmkernel_gateway_request_latency_seconds",
                "llmkernel_gateway_time_to_first_token_seconds",
            ) and sample.name.endswith("_bucket"):
                target = row(labels) if labels.get("model") else None
                if target is not None:
                    bound = float(labels["le"])
                    into = target.latency if "latency" in name else target.ttft
                    into[bound] = into.get(bound, 0.0) + sample.value
            elif name == "llmkernel_gateway_cost_today_usd":
                target = row(labels)
                if target is not None:
                    target.cost_today += sample.value
            elif name == "llmkernel_gateway_deployment_state":
                target = row(labels)
                if target is not None:
                    target.state = max(target.state or 0, int(sample.value))
    # a deployment is what something was sent to (or whose breaker is known)
    return {
        key: rows[key].as_dict()
        for key in sorted(rows)
        if rows[key].attempts or rows[key].state is not None
    }
