"""The ``cost`` routing strategy for llmkernel.

Cost: the candidate with the cheapest estimated cost for this request first.

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "Cost": "llmkernel_strategy_cost.strategy",
    "CostSettings": "llmkernel_strategy_cost.strategy",
    "NAME": "llmkernel_strategy_cost.strategy",
    "make": "llmkernel_strategy_cost.strategy",
}

if TYPE_CHECKING:
    from llmkernel_strategy_cost.strategy import NAME, Cost, CostSettings, make


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "NAME",
    "Cost",
    "CostSettings",
    "make",
]
