"""The ``latency`` routing strategy for llmkernel.

Latency: the candidate with the lowest moving-average latency first.

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "Latency": "llmkernel_strategy_latency.strategy",
    "LatencySettings": "llmkernel_strategy_latency.strategy",
    "NAME": "llmkernel_strategy_latency.strategy",
    "make": "llmkernel_strategy_latency.strategy",
}

if TYPE_CHECKING:
    from llmkernel_strategy_latency.strategy import NAME, Latency, LatencySettings, make


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "NAME",
    "Latency",
    "LatencySettings",
    "make",
]
