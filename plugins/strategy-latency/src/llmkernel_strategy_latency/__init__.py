"""The ``latency`` routing strategy for llmkernel.

Latency: the candidate with the lowest moving-average latency first.
"""

from __future__ import annotations

from llmkernel_strategy_latency.strategy import NAME, Latency, LatencySettings, make

__all__ = ["NAME", "Latency", "LatencySettings", "make"]
