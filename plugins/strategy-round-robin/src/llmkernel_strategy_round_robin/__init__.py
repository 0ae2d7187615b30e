"""The ``round-robin`` routing strategy for llmkernel.

Round-robin: each call starts one candidate further along the list, and falls
back through the rest in order; a separate turn for each candidate list.

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "llmkernel_strategy_round_robin.strategy": [
            "NAME",
            "RoundRobin",
            "RoundRobinSettings",
            "make",
        ],
    },
)

if TYPE_CHECKING:
    from llmkernel_strategy_round_robin.strategy import NAME, RoundRobin, RoundRobinSettings, make


__all__ = [
    "NAME",
    "RoundRobin",
    "RoundRobinSettings",
    "make",
]
