"""The ``least-loaded`` routing strategy for llmkernel.

Least-loaded: the candidate with the fewest requests in flight first (counted by
the routing gate of llmkernel-routing); ties take turns, so idle candidates share
the load instead of the first one taking it all.

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "LeastLoaded": "llmkernel_strategy_least_loaded.strategy",
    "LeastLoadedSettings": "llmkernel_strategy_least_loaded.strategy",
    "NAME": "llmkernel_strategy_least_loaded.strategy",
    "make": "llmkernel_strategy_least_loaded.strategy",
}

if TYPE_CHECKING:
    from llmkernel_strategy_least_loaded.strategy import (
        NAME,
        LeastLoaded,
        LeastLoadedSettings,
        make,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "NAME",
    "LeastLoaded",
    "LeastLoadedSettings",
    "make",
]
