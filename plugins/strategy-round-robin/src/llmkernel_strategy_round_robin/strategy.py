"""Round-robin: each call starts one candidate further along the list, and falls
back through the rest in order; a separate turn for each candidate list."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from llmkernel.options import parse_options

NAME = "round-robin"


@attrs.frozen(kw_only=True)
class RoundRobinSettings:
    """``[routing.round-robin]``: no settings yet."""


@attrs.define(kw_only=True, eq=False)
class RoundRobin:
    """The ``round-robin`` strategy."""

    settings: RoundRobinSettings = attrs.field(factory=RoundRobinSettings)
    _turns: dict[tuple[str, ...], itertools.count[int]] = attrs.field(factory=dict)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def select(self, ctx: Any, candidates: Sequence[Any]) -> list[Any]:
        chain = list(candidates)
        if len(chain) < 2:
            return chain
        key = tuple(f"{c.provider}/{c.model}" for c in chain)
        turn = self._turns.get(key)
        if turn is None:
            with self._lock:
                turn = self._turns.setdefault(key, itertools.count())
        start = next(turn) % len(chain)
        return chain[start:] + chain[:start]


def make(kernel: Any, settings: Mapping[str, Any]) -> RoundRobin:
    return RoundRobin(
        settings=parse_options(RoundRobinSettings, settings, where=f"[routing.{NAME}]")
    )


__all__ = ["NAME", "RoundRobin", "RoundRobinSettings", "make"]
