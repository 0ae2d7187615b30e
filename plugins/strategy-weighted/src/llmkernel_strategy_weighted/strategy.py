"""Weighted: each call draws its first candidate with probability proportional to
its weight, then the next among the rest, and so on (weighted sampling without
replacement), so the whole chain is a fallback order.

Weights come from the ``[models]`` target tables (``{target = "openai/gpt-4o",
weight = 3}``), or ``[routing.weighted] weights = {"openai/gpt-4o" = 3}``;
``default_weight`` otherwise. A weight of 0 is only tried after every other.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from llmkernel.options import parse_options

NAME = "weighted"


@attrs.frozen(kw_only=True)
class WeightedSettings:
    seed: int | None = None
    default_weight: float = 1.0
    weights: dict[str, float] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if self.default_weight < 0 or any(w < 0 for w in self.weights.values()):
            raise ValueError("weights must not be negative")


def weight_of(candidate: Any, settings: WeightedSettings) -> float:
    """The candidate's weight: config table, then its target's ``weight`` tag."""
    key = f"{candidate.provider}/{candidate.model}"
    if key in settings.weights:
        return settings.weights[key]
    tags: Mapping[str, Any] = getattr(candidate, "tags", None) or {}
    value = tags.get("weight")
    if value is None:
        return settings.default_weight
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"weight of {key} must be a number >= 0, not {value!r}")
    return float(value)


@attrs.define(kw_only=True, eq=False)
class Weighted:
    """The ``weighted`` strategy."""

    settings: WeightedSettings = attrs.field(factory=WeightedSettings)
    _rng: random.Random = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self.settings.seed)

    def select(self, ctx: Any, candidates: Sequence[Any]) -> list[Any]:
        chain = list(candidates)
        if len(chain) < 2:
            return chain
        rng = self._rng
        keyed = []
        for index, candidate in enumerate(chain):
            weight = weight_of(candidate, self.settings)
            # Efraimidis-Spirakis: the largest u ** (1 / w) first
            key = rng.random() ** (1.0 / weight) if weight > 0 else -1.0
            keyed.append((-key, index, candidate))
        keyed.sort(key=lambda item: (item[0], item[1]))
        return [candidate for _, _, candidate in keyed]


def make(kernel: Any, settings: Mapping[str, Any]) -> Weighted:
    return Weighted(settings=parse_options(WeightedSettings, settings, where=f"[routing.{NAME}]"))


__all__ = ["NAME", "Weighted", "WeightedSettings", "make", "weight_of"]
