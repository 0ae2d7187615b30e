from __future__ import annotations

from decimal import Decimal

from llmkernel.routing import Candidate
from llmkernel_strategy_cost import Cost, CostSettings

A = Candidate(provider="a", model="m")
B = Candidate(provider="b", model="m")
C = Candidate(provider="c", model="m")
D = Candidate(provider="d", model="m")


class Ctx:
    """What the cost strategy reads of a request context: its worst-case costs."""

    def __init__(self, costs):
        self.costs = costs

    def worst_case_cost(self, candidate):
        return self.costs[candidate.provider]


def test_cheapest_first_unpriced_last_ties_in_config_order():
    ctx = Ctx({"a": Decimal("0.3"), "b": None, "c": Decimal("0.1"), "d": Decimal("0.3")})
    assert Cost().select(ctx, [A, B, C, D]) == [C, A, D, B]


def test_unpriced_can_be_dropped():
    ctx = Ctx({"a": None, "b": Decimal(1)})
    assert Cost(settings=CostSettings(unpriced="drop")).select(ctx, [A, B]) == [B]
