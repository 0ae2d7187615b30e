"""The ``tiers`` routing strategy for llmkernel.

Tiers: a configured quality ranking, best tier first; another strategy orders
the candidates within each tier (``within``, config order by default).
"""

from __future__ import annotations

from llmkernel_strategy_tiers.strategy import NAME, Tiers, TiersSettings, make, tier_of

__all__ = ["NAME", "Tiers", "TiersSettings", "make", "tier_of"]
