"""The ``weighted`` routing strategy for llmkernel.

Weighted: each call draws its first candidate with probability proportional to
its weight, then the next among the rest, and so on (weighted sampling without
replacement), so the whole chain is a fallback order.

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "llmkernel_strategy_weighted.strategy": [
            "NAME",
            "Weighted",
            "WeightedSettings",
            "make",
            "weight_of",
        ],
    },
)

if TYPE_CHECKING:
    from llmkernel_strategy_weighted.strategy import (
        NAME,
        Weighted,
        WeightedSettings,
        make,
        weight_of,
    )


__all__ = [
    "NAME",
    "Weighted",
    "WeightedSettings",
    "make",
    "weight_of",
]
