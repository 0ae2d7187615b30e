"""The ``round-robin`` routing strategy for llmkernel.

Round-robin: each call starts one candidate further along the list, and falls
back through the rest in order; a separate turn for each candidate list.
"""

from __future__ import annotations

from llmkernel_strategy_round_robin.strategy import NAME, RoundRobin, RoundRobinSettings, make

__all__ = ["NAME", "RoundRobin", "RoundRobinSettings", "make"]
