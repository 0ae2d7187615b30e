"""The ``tiers`` routing strategy for llmkernel.

Tiers: a configured quality ranking, best tier first; another strategy orders
the candidates within each tier (``within``, config order by default).

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "llmkernel_strategy_tiers.strategy": ["NAME", "Tiers", "TiersSettings", "make", "tier_of"],
    },
)

if TYPE_CHECKING:
    from llmkernel_strategy_tiers.strategy import NAME, Tiers, TiersSettings, make, tier_of


__all__ = [
    "NAME",
    "Tiers",
    "TiersSettings",
    "make",
    "tier_of",
]
