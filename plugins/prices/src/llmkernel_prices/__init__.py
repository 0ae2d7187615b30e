"""Pricing data for llmkernel: per-model prices with their sources, long-context tiers
and batch discounts, served through the ``price_model`` hook.

    from llmkernel_prices import lookup

    price = lookup("anthropic", "claude-sonnet-4-5")
    price.cost(usage)  # Decimal, each usage bucket at its own rate
"""

from __future__ import annotations

from llmkernel_prices.price import Tier, TieredPrice
from llmkernel_prices.table import PriceTable, load_table, lookup

__all__ = ["PriceTable", "Tier", "TieredPrice", "load_table", "lookup"]
