"""Random: a uniformly shuffled fallback chain for each call."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from llmkernel.options import parse_options

NAME = "random"


@attrs.frozen(kw_only=True)
class RandomSettings:
    """``[routing.random]``: ``seed`` makes the order repeatable (tests, demos)."""

    seed: int | None = None


@attrs.define(kw_only=True, eq=False)
class RandomStrategy:
    """The ``random`` strategy."""

    settings: RandomSettings = attrs.field(factory=RandomSettings)
    _rng: random.Random = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self.settings.seed)

    def select(self, ctx: Any, candidates: Sequence[Any]) -> list[Any]:
        chain = list(candidates)
        self._rng.shuffle(chain)
        return chain


def make(kernel: Any, settings: Mapping[str, Any]) -> RandomStrategy:
    return RandomStrategy(
        settings=parse_options(RandomSettings, settings, where=f"[routing.{NAME}]")
    )


__all__ = ["NAME", "RandomSettings", "RandomStrategy", "make"]
