"""The ``cost`` routing strategy for llmkernel.

Cost: the candidate with the cheapest estimated cost for this request first.
"""

from __future__ import annotations

from llmkernel_strategy_cost.strategy import NAME, Cost, CostSettings, make

__all__ = ["NAME", "Cost", "CostSettings", "make"]
