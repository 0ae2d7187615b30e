"""The ``cost`` routing strategy for llmkernel.

Cost: the candidate with the cheapest estimated cost for this request first.

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "llmkernel_strategy_cost.strategy": ["Cost", "CostSettings", "NAME", "make"],
    },
)

if TYPE_CHECKING:
    from llmkernel_strategy_cost.strategy import NAME, Cost, CostSettings, make


__all__ = [
    "NAME",
    "Cost",
    "CostSettings",
    "make",
]
