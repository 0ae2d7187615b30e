"""The ``tiers`` routing strategy for llmkernel.

Tiers: a configured quality ranking, best tier first; another strategy orders
the candidates within each tier (``within``, config order by default).

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "NAME": "llmkernel_strategy_tiers.strategy",
    "Tiers": "llmkernel_strategy_tiers.strategy",
    "TiersSettings": "llmkernel_strategy_tiers.strategy",
    "make": "llmkernel_strategy_tiers.strategy",
    "tier_of": "llmkernel_strategy_tiers.strategy",
}

if TYPE_CHECKING:
    from llmkernel_strategy_tiers.strategy import NAME, Tiers, TiersSettings, make, tier_of


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "NAME",
    "Tiers",
    "TiersSettings",
    "make",
    "tier_of",
]
