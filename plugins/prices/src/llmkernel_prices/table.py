"""The shipped price tables: one JSON file per provider under ``data/``.

Each model entry has ``input`` and ``output`` (USD per million tokens, as strings so
they stay exact), optionally ``cached_input``, ``cache_write`` (5-minute),
``cache_write_1h``, ``reasoning``, ``tiers`` (``above_input_tokens`` with the rates
that replace the base ones), ``aliases`` (ids with the same documented price) and
``dated_snapshots`` (true when the provider documents the same price for every dated
snapshot, ``gpt-4.1-2025-04-14`` or ``claude-sonnet-4-5-20250929``), plus ``source``,
``via`` and ``checked``. A model that is not there is unpriced: ``None``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib import resources
from typing import Any

import attrs

from llmkernel.types import ModelPrice
from llmkernel_prices.price import Tier, TieredPrice

__all__ = ["PriceTable", "load_table", "lookup"]

PROVIDER_FILES = ("openai", "anthropic", "gemini", "deepseek", "groq", "together", "mistral")
_RATE_KEYS = ("input", "output", "cached_input", "cache_write", "cache_write_1h", "reasoning")
# -2024-08-06, -20250929, @20240620 (Vertex style)
_DATE_SUFFIX = re.compile(r"(?:-\d{4}-\d{2}-\d{2}|[-@]\d{8})$")


@attrs.frozen(kw_only=True)
class PriceTable:
    """One provider's prices, by model id and alias."""

    provider: str
    prices: Mapping[str, TieredPrice]
    aliases: Mapping[str, str]
    dated: frozenset[str]
    basis: str = ""

    def get(self, model: str) -> TieredPrice | None:
        """The price of ``model``: exact id, then a listed alias, then (where the
        provider documents one price for all snapshots) the id without its date."""
        price = self.prices.get(model)
        if price is not None:
            return price
        target = self.aliases.get(model)
        if target is not None:
            return self.prices[target]
        family = _DATE_SUFFIX.sub("", model)
        if family != model and family in self.dated:
            return self.prices[family]
        return None


@attrs.frozen(kw_only=True)
class LocalRule:
    free_provider_types: frozenset[str]
    free_presets: frozenset[str]
    price: ModelPrice


def _decimal(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{where} must be a decimal string, not {value!r}")
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{where} is not a number: {value!r}") from None
    if result < 0:
        raise ValueError(f"{where} must not be negative")
    return result


def _rates(entry: Mapping[str, Any], where: str, currency: str, source: str) -> ModelPrice:
    values = {key: _decimal(entry[key], f"{where}.{key}") for key in _RATE_KEYS if key in entry}
    for key in ("input", "output"):
        if key not in values:
            raise ValueError(f"{where} lacks {key!r}")
    return ModelPrice(**values, currency=currency, source=source)


def parse_table(data: Mapping[str, Any], name: str) -> PriceTable:
    """Build a table from a provider file's JSON; ``ValueError`` names the bad field."""
    currency = str(data.get("currency", "USD"))
    batch = data.get("batch_discount")
    batch_discount = _decimal(batch, f"{name}.batch_discount") if batch is not None else None
    prices: dict[str, TieredPrice] = {}
    aliases: dict[str, str] = {}
    dated: set[str] = set()
    for model, entry in data.get("models", {}).items():
        where = f"{name}.models.{model}"
        source = str(entry.get("source", ""))
        tiers = []
        for i, tier in enumerate(entry.get("tiers", ())):
            merged = {**tier}
            tiers.append(
                Tier(
                    above_input_tokens=int(tier["above_input_tokens"]),
                    price=_rates(merged, f"{where}.tiers[{i}]", currency, source),
                )
            )
        tiers.sort(key=lambda t: t.above_input_tokens)
        prices[model] = TieredPrice(
            model=model,
            base=_rates(entry, where, currency, source),
            tiers=tuple(tiers),
            batch_discount=batch_discount,
            source=source,
            via=str(entry.get("via", "")),
            checked=str(entry.get("checked", "")),
            note=str(entry.get("note", "")),
        )
        for alias in entry.get("aliases", ()):
            aliases[alias] = model
        if entry.get("dated_snapshots"):
            dated.add(model)
    return PriceTable(
        provider=str(data.get("provider", name)),
        prices=prices,
        aliases=aliases,
        dated=frozenset(dated),
        basis=str(data.get("basis", "")),
    )


def _read(name: str) -> Any:
    text = resources.files("llmkernel_prices").joinpath("data", f"{name}.json").read_text("utf-8")
    return json.loads(text)


@cache
def load_table(provider: str) -> PriceTable:
    """The shipped table of ``provider`` (one of :data:`PROVIDER_FILES`); read once
    per process."""
    if provider not in PROVIDER_FILES:
        raise KeyError(f"no shipped price table for {provider!r}; known: {PROVIDER_FILES}")
    return parse_table(_read(provider), provider)


@cache
def local_rule() -> LocalRule:
    data = _read("local")
    return LocalRule(
        free_provider_types=frozenset(data["free_provider_types"]),
        free_presets=frozenset(data["free_presets"]),
        price=ModelPrice(
            input=Decimal(0), output=Decimal(0), source=str(data.get("source", "local"))
        ),
    )


def lookup(provider: str, model: str) -> TieredPrice | ModelPrice | None:
    """The shipped price of ``model`` at ``provider`` (a table name or a local
    provider type such as ``ollama``); ``None`` when unpriced."""
    rule = local_rule()
    if provider in rule.free_provider_types or provider in rule.free_presets:
        return rule.price
    if provider not in PROVIDER_FILES:
        return None
    return load_table(provider).get(model)
