"""The ``random`` routing strategy for llmkernel.

Random: a uniformly shuffled fallback chain for each call.

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "llmkernel_strategy_random.strategy": ["NAME", "RandomSettings", "RandomStrategy", "make"],
    },
)

if TYPE_CHECKING:
    from llmkernel_strategy_random.strategy import NAME, RandomSettings, RandomStrategy, make


__all__ = [
    "NAME",
    "RandomSettings",
    "RandomStrategy",
    "make",
]
