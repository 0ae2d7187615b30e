"""The ``weighted`` routing strategy for llmkernel.

Weighted: each call draws its first candidate with probability proportional to
its weight, then the next among the rest, and so on (weighted sampling without
replacement), so the whole chain is a fallback order.

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "NAME": "llmkernel_strategy_weighted.strategy",
    "Weighted": "llmkernel_strategy_weighted.strategy",
    "WeightedSettings": "llmkernel_strategy_weighted.strategy",
    "make": "llmkernel_strategy_weighted.strategy",
    "weight_of": "llmkernel_strategy_weighted.strategy",
}

if TYPE_CHECKING:
    from llmkernel_strategy_weighted.strategy import (
        NAME,
        Weighted,
        WeightedSettings,
        make,
        weight_of,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "NAME",
    "Weighted",
    "WeightedSettings",
    "make",
    "weight_of",
]
