"""Tiers: a configured quality ranking, best tier first; another strategy orders
the candidates within each tier (``within``, config order by default).

A candidate's tier is its ``[models]`` target's ``tier`` (``{target =
"openai/gpt-4o", tier = "gold"}``), else ``[routing.tiers] tiers`` by
``provider/model``. Candidates of no ranked tier come last, in config order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from llmkernel.options import parse_options

NAME = "tiers"


@attrs.frozen(kw_only=True)
class TiersSettings:
    ranking: list[str]  # best first
    within: str = "priority"
    #: the inner strategy's settings; by default its own ``[routing.<within>]`` table
    within_settings: dict[str, Any] | None = None
    tiers: dict[str, str] = attrs.field(factory=dict)  # "provider/model" -> tier

    def __attrs_post_init__(self) -> None:
        if not self.ranking:
            raise ValueError("ranking must name at least one tier")
        if len(set(self.ranking)) != len(self.ranking):
            raise ValueError("ranking names a tier twice")
        if self.within == NAME:
            raise ValueError("within cannot be 'tiers' itself")


def tier_of(candidate: Any, settings: TiersSettings) -> str | None:
    tags: Mapping[str, Any] = getattr(candidate, "tags", None) or {}
    tier = tags.get("tier")
    if tier is None:
        tier = settings.tiers.get(f"{candidate.provider}/{candidate.model}")
    return None if tier is None else str(tier)


@attrs.define(kw_only=True, eq=False)
class Tiers:
    """The ``tiers`` strategy."""

    settings: TiersSettings
    inner: Any = None  # the strategy within a tier; None keeps config order

    def select(self, ctx: Any, candidates: Sequence[Any]) -> list[Any]:
        rank = {name: i for i, name in enumerate(self.settings.ranking)}
        groups: list[list[Any]] = [[] for _ in range(len(rank) + 1)]
        for candidate in candidates:
            tier = tier_of(candidate, self.settings)
            groups[rank.get(tier, len(rank)) if tier is not None else len(rank)].append(candidate)
        chain: list[Any] = []
        for group in groups[:-1]:
            inner = self.inner
            chain.extend(inner.select(ctx, group) if len(group) > 1 and inner else group)
        return chain + groups[-1]


def make(kernel: Any, settings: Mapping[str, Any]) -> Tiers:
    parsed = parse_options(TiersSettings, settings, where=f"[routing.{NAME}]")
    inner = None
    if parsed.within != "priority" or parsed.within_settings:
        inner = kernel.strategies.create(kernel, parsed.within, parsed.within_settings)
    return Tiers(settings=parsed, inner=inner)


__all__ = ["NAME", "Tiers", "TiersSettings", "make", "tier_of"]
