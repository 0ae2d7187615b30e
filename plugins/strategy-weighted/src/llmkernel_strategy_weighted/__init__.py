"""The ``weighted`` routing strategy for llmkernel.

Weighted: each call draws its first candidate with probability proportional to
its weight, then the next among the rest, and so on (weighted sampling without
replacement), so the whole chain is a fallback order.
"""

from __future__ import annotations

from llmkernel_strategy_weighted.strategy import NAME, Weighted, WeightedSettings, make, weight_of

__all__ = ["NAME", "Weighted", "WeightedSettings", "make", "weight_of"]
