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
_OPENAI_HOST = "https://api.openai.com"

_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def openai_presets(kernel: Kernel, instance: str | None = None) -> set[str]:
    """The presets of the configured ``type = "openai"`` instances (or of the one
    ``instance`` when the kernel says which): ``"openai"`` for OpenAI itself, the
    preset's name, or ``"custom"`` for another base URL."""
    presets: set[str] = set()
    for name, section in kernel.config.providers.items():
        if section.type != "openai" or (instance is not None and name != instance):
            continue
        options: Any = section.options
        preset = options.get("preset")
        base_url = str(options.get("base_url") or "")
        if preset:
            presets.add(str(preset))
        elif base_url and not base_url.startswith(_OPENAI_HOST):
            presets.add("custom")
        else:
            presets.add("openai")
    return presets or {"openai"}


def _openai_compatible(
    kernel: Kernel, model: str, instance: str | None = None
) -> TieredPrice | ModelPrice | None:
    from llmkernel_prices.table import load_table, local_rule

    presets = openai_presets(kernel, instance)
    found = {}
    for preset in presets:
        table = _PRESET_TABLES.get(preset)
        if table is not None:
            price = load_table(table).get(model)
            if price is not None:
                found[preset] = price
    if len(found) == 1:
        return next(iter(found.values()))
    if len(found) > 1:  # two priced servers claim the model: do not pick one
        return None
    rule = local_rule()
    if presets <= rule.free_presets:
        return rule.price
    return None


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
        instance = getattr(candidate, "provider", None)
        if instance is not None and instance not in kernel.config.providers:
            instance = None  # "openai/gpt-4o" with no table: OpenAI itself
        price = _openai_compatible(kernel, model, instance)
    else:
        return None  # a provider type we ship nothing for: its own plugin may price it
    if price is None:
        _warn_once(provider_type, model)
    return price
