"""The ``random`` routing strategy for llmkernel.

Random: a uniformly shuffled fallback chain for each call.
"""

from __future__ import annotations

from llmkernel_strategy_random.strategy import NAME, RandomSettings, RandomStrategy, make

__all__ = ["NAME", "RandomSettings", "RandomStrategy", "make"]
