"""The ``random`` routing strategy for llmkernel.

Random: a uniformly shuffled fallback chain for each call.

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "NAME": "llmkernel_strategy_random.strategy",
    "RandomSettings": "llmkernel_strategy_random.strategy",
    "RandomStrategy": "llmkernel_strategy_random.strategy",
    "make": "llmkernel_strategy_random.strategy",
}

if TYPE_CHECKING:
    from llmkernel_strategy_random.strategy import NAME, RandomSettings, RandomStrategy, make


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "NAME",
    "RandomSettings",
    "RandomStrategy",
    "make",
]
