"""Latency: the candidate with the lowest moving-average latency first.

Reads the EWMAs kept by llmkernel-routing: time to first token for streams,
whole-call latency otherwise (each falls back to the other when it has no sample
yet). A failed attempt counts as slow (``failure_penalty`` in ``[plugin.routing]``).
A candidate with no sample is tried first (warm-up). An estimate decays with its
age, halving every ``half_life`` seconds, so a candidate left alone after being
slow is tried again and its estimate refreshed: a recovered deployment wins its
traffic back, and a degraded one loses it as soon as its samples rise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

from llmkernel.options import parse_options
from llmkernel_routing import DeploymentStats, Routing, routing_for

NAME = "latency"


@attrs.frozen(kw_only=True)
class LatencySettings:
    #: ``auto``: time to first token for streams, latency for other calls.
    metric: Literal["auto", "latency", "ttft"] = "auto"
    #: Seconds for an unrefreshed estimate to halve (0: no decay).
    half_life: float = 60.0
    #: Try candidates with no sample before the measured ones.
    explore: bool = True

    def __attrs_post_init__(self) -> None:
        if self.half_life < 0:
            raise ValueError("half_life must not be negative")


@attrs.define(kw_only=True, eq=False)
class Latency:
    """The ``latency`` strategy."""

    routing: Routing
    settings: LatencySettings = attrs.field(factory=LatencySettings)

    def estimate(self, stats: DeploymentStats | None, stream: bool, now: float) -> float | None:
        """The decayed estimate in seconds, ``None`` when never measured."""
        if stats is None:
            return None
        metric = self.settings.metric
        first_ttft = metric == "ttft" or (metric == "auto" and stream)
        pairs = [(stats.ewma_ttft, stats.ttft_at), (stats.ewma_latency, stats.latency_at)]
        if not first_ttft:
            pairs.reverse()
        for value, at in pairs:
            if value is not None and at is not None:
                half_life = self.settings.half_life
                age = max(0.0, now - at)
                return value * 0.5 ** (age / half_life) if half_life else value
        return None

    def select(self, ctx: Any, candidates: Sequence[Any]) -> list[Any]:
        chain = list(candidates)
        if len(chain) < 2:
            return chain
        stream = getattr(ctx, "kind", "chat") == "stream"
        now = self.routing.clock()
        unknown = 0.0 if self.settings.explore else float("inf")
        deployments = self.routing.deployments

        def score(item: tuple[int, Any]) -> tuple[float, int]:
            index, candidate = item
            stats = deployments.get(f"{candidate.provider}/{candidate.model}")
            value = self.estimate(stats, stream, now)
            return (unknown if value is None else value), index

        return [c for _, c in sorted(enumerate(chain), key=score)]


def make(kernel: Any, settings: Mapping[str, Any]) -> Latency:
    parsed = parse_options(LatencySettings, settings, where=f"[routing.{NAME}]")
    return Latency(routing=routing_for(kernel), settings=parsed)


__all__ = ["NAME", "Latency", "LatencySettings", "make"]
