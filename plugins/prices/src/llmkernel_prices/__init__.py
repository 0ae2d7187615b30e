"""Pricing data for llmkernel: per-model prices with their sources, long-context tiers
and batch discounts, served through the ``price_model`` hook.

    from llmkernel_prices import lookup

    price = lookup("anthropic", "claude-sonnet-4-5")
    price.cost(usage)  # Decimal, each usage bucket at its own rate

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "llmkernel_prices.table": ["PriceTable", "load_table", "lookup"],
        "llmkernel_prices.price": ["Tier", "TieredPrice"],
    },
)

if TYPE_CHECKING:
    from llmkernel_prices.price import Tier, TieredPrice
    from llmkernel_prices.table import PriceTable, load_table, lookup


__all__ = [
    "PriceTable",
    "Tier",
    "TieredPrice",
    "load_table",
    "lookup",
]
