"""The ``latency`` routing strategy for llmkernel.

Latency: the candidate with the lowest moving-average latency first.

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "llmkernel_strategy_latency.strategy": ["Latency", "LatencySettings", "NAME", "make"],
    },
)

if TYPE_CHECKING:
    from llmkernel_strategy_latency.strategy import NAME, Latency, LatencySettings, make


__all__ = [
    "NAME",
    "Latency",
    "LatencySettings",
    "make",
]
