"""Pricing data for llmkernel: per-model prices with their sources, long-context tiers
and batch discounts, served through the ``price_model`` hook.

    from llmkernel_prices import lookup

    price = lookup("anthropic", "claude-sonnet-4-5")
    price.cost(usage)  # Decimal, each usage bucket at its own rate

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "PriceTable": "llmkernel_prices.table",
    "Tier": "llmkernel_prices.price",
    "TieredPrice": "llmkernel_prices.price",
    "load_table": "llmkernel_prices.table",
    "lookup": "llmkernel_prices.table",
}

if TYPE_CHECKING:
    from llmkernel_prices.price import Tier, TieredPrice
    from llmkernel_prices.table import PriceTable, load_table, lookup


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "PriceTable",
    "Tier",
    "TieredPrice",
    "load_table",
    "lookup",
]
