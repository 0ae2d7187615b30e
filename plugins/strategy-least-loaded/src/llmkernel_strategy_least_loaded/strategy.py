"""Least-loaded: the candidate with the fewest requests in flight first (counted by
the routing gate of llmkernel-routing); ties take turns, so idle candidates share
the load instead of the first one taking it all."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from llmkernel.options import parse_options
from llmkernel_routing import Routing, routing_for

NAME = "least-loaded"


@attrs.frozen(kw_only=True)
class LeastLoadedSettings:
    """``[routing.least-loaded]``: ``weights`` divide the in-flight count (a
    candidate of weight 2 carries twice the load before it looks as busy)."""

    weights: dict[str, float] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if any(w <= 0 for w in self.weights.values()):
            raise ValueError("weights must be positive")


@attrs.define(kw_only=True, eq=False)
class LeastLoaded:
    """The ``least-loaded`` strategy."""

    routing: Routing
    settings: LeastLoadedSettings = attrs.field(factory=LeastLoadedSettings)
    _turn: itertools.count[int] = attrs.field(factory=itertools.count)

    def select(self, ctx: Any, candidates: Sequence[Any]) -> list[Any]:
        chain = list(candidates)
        n = len(chain)
        if n < 2:
            return chain
        offset = next(self._turn) % n
        weights = self.settings.weights
        stats = self.routing.deployments

        def load(item: tuple[int, Any]) -> tuple[float, int]:
            index, candidate = item
            key = f"{candidate.provider}/{candidate.model}"
            current = stats.get(key)
            in_flight = current.in_flight if current is not None else 0
            return in_flight / weights.get(key, 1.0), (index - offset) % n

        return [c for _, c in sorted(enumerate(chain), key=load)]


def make(kernel: Any, settings: Mapping[str, Any]) -> LeastLoaded:
    parsed = parse_options(LeastLoadedSettings, settings, where=f"[routing.{NAME}]")
    return LeastLoaded(routing=routing_for(kernel), settings=parsed)


__all__ = ["NAME", "LeastLoaded", "LeastLoadedSettings", "make"]
