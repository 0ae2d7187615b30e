"""llmkernel hooks of the prices plugin: ``price_model`` from the shipped tables.

Order: the config's ``[prices]`` table wins over every plugin (the kernel asks it
first); then other ``price_model`` plugins (this one is ``trylast``, so any plugin
overrides the shipped table); then the shipped table. An unknown model stays
unpriced (``None``) and is logged once per process.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from llmkernel import hookimpl, log

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel
    from llmkernel.types import ModelPrice
    from llmkernel_prices.price import TieredPrice

__all__ = ["price_model"]

# provider type -> shipped table, for the native provider plugins
_NATIVE = {"anthropic": "anthropic", "gemini": "gemini"}
# OpenAI-compatible presets with a shipped table. OpenRouter has none: its prices are
# per routed model and change constantly, so its models stay unpriced unless the
# config's [prices] table names them.
_PRESET_TABLES = {
    "openai": "openai",
    "deepseek": "deepseek",
    "groq": "groq",
    "together": "together",
    "mistral": "mistral",
}
_MISSING = object()

_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def instance_preset(kernel: Kernel, instance: str) -> str | None:
    """The preset whose table prices the ``type = "openai"`` ``instance``: OpenAI's
    own API for a plain ``openai/...`` without a ``[providers.openai]`` table; else
    what the instance says (``price_preset`` of the openai provider: its ``preset``,
    or the hosted preset its ``base_url`` is on); else, from its table, its
    ``preset`` or OpenAI without a ``base_url``. ``None``: a custom server."""
    section = kernel.config.providers.get(instance)
    if section is None:
        return "openai"
    provider_of = getattr(kernel, "provider", None)
    if provider_of is not None:
        try:
            found = getattr(provider_of(instance), "price_preset", _MISSING)
        except Exception:  # a provider that cannot be built is priced from its table
            found = _MISSING
        if found is None or isinstance(found, str):
            return found
    options: Any = section.options
    if options.get("preset"):
        return str(options["preset"])
    return None if options.get("base_url") else "openai"


def openai_presets(kernel: Kernel) -> set[str | None]:
    """The presets of every configured ``type = "openai"`` instance (``None`` for a
    custom server), or OpenAI's own when there is none."""
    presets = {
        instance_preset(kernel, name)
        for name, section in kernel.config.providers.items()
        if section.type == "openai"
    }
    return presets or {"openai"}


def _table_price(preset: str | None, model: str) -> TieredPrice | ModelPrice | None:
    from llmkernel_prices.table import load_table, local_rule

    table = _PRESET_TABLES.get(preset or "")
    if table is not None:
        return load_table(table).get(model)
    rule = local_rule()
    return rule.price if preset in rule.free_presets else None


def _openai_compatible(
    kernel: Kernel, model: str, instance: str | None
) -> TieredPrice | ModelPrice | None:
    if instance is not None:
        return _table_price(instance_preset(kernel, instance), model)
    # without the candidate: priced only when every configured server agrees
    presets = openai_presets(kernel)
    found = {preset: price for preset in presets if (price := _table_price(preset, model))}
    if len(found) != 1 or (None in presets):
        return None
    (preset, price), *_ = found.items()
    from llmkernel_prices.table import local_rule

    if preset in local_rule().free_presets and len(presets) > 1:
        return None  # a local server's free price never stands for a paid one's
    return price


def _warn_once(provider_type: str, model: str) -> None:
    with _warned_lock:
        if (provider_type, model) in _warned:
            return
        _warned.add((provider_type, model))
    log.warning(
        "llmkernel.prices.unpriced",
        provider_type=provider_type,
        model=model,
        hint=f'add [prices."{provider_type}/{model}"] with input and output to price it',
    )


@hookimpl(trylast=True)
def price_model(
    kernel: Kernel, provider_type: str, model: str, candidate: Any
) -> TieredPrice | ModelPrice | None:
    """The shipped price of ``model``; ``None`` (unpriced) when it is not known. With
    the ``candidate``, an OpenAI-compatible instance is priced by its own preset.

    ``candidate`` has no default on purpose: pluggy passes only the arguments an
    implementation requires, so a default would mean it is never given."""
    from llmkernel_prices.table import load_table, local_rule

    price: TieredPrice | ModelPrice | None
    rule = local_rule()
    if provider_type in rule.free_provider_types:
        return rule.price
    if provider_type in _NATIVE:
        price = load_table(_NATIVE[provider_type]).get(model)
    elif provider_type == "openai":
        price = _openai_compatible(kernel, model, getattr(candidate, "provider", None))
    else:
        return None  # a provider type we ship nothing for: its own plugin may price it
    if price is None:
        _warn_once(provider_type, model)
    return price
