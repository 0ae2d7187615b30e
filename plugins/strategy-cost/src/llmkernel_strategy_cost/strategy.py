"""Cost: the candidate with the cheapest estimated cost for this request first.

The estimate is the worst case: the counted prompt at the input price plus
``max_tokens`` (or the model's maximum output) at the output price
(``ctx.worst_case_cost``). Unpriced candidates come after every priced one, in
config order; equal costs keep config order. Candidates that lack a capability
the request needs are dropped before any strategy by llmkernel-routing's filters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

import attrs

from llmkernel.options import parse_options

NAME = "cost"


@attrs.frozen(kw_only=True)
class CostSettings:
    #: Where unpriced candidates go: after the priced ones, or dropped.
    unpriced: Literal["last", "drop"] = "last"


@attrs.define(kw_only=True, eq=False)
class Cost:
    """The ``cost`` strategy."""

    settings: CostSettings = attrs.field(factory=CostSettings)

    def select(self, ctx: Any, candidates: Sequence[Any]) -> list[Any]:
        chain = list(candidates)
        if len(chain) < 2 and self.settings.unpriced == "last":
            return chain
        priced: list[tuple[Decimal, int, Any]] = []
        unpriced: list[Any] = []
        for index, candidate in enumerate(chain):
            cost = ctx.worst_case_cost(candidate)
            if cost is None:
                unpriced.append(candidate)
            else:
                priced.append((cost, index, candidate))
        priced.sort(key=lambda item: (item[0], item[1]))
        ordered = [c for _, _, c in priced]
        return ordered + unpriced if self.settings.unpriced == "last" else ordered


def make(kernel: Any, settings: Mapping[str, Any]) -> Cost:
    return Cost(settings=parse_options(CostSettings, settings, where=f"[routing.{NAME}]"))


__all__ = ["NAME", "Cost", "CostSettings", "make"]
