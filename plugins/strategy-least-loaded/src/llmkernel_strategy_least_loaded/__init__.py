"""The ``least-loaded`` routing strategy for llmkernel.

Least-loaded: the candidate with the fewest requests in flight first (counted by
the routing gate of llmkernel-routing); ties take turns, so idle candidates share
the load instead of the first one taking it all.
"""

from __future__ import annotations

from llmkernel_strategy_least_loaded.strategy import NAME, LeastLoaded, LeastLoadedSettings, make

__all__ = ["NAME", "LeastLoaded", "LeastLoadedSettings", "make"]
