"""The ``round-robin`` routing strategy for llmkernel.

Round-robin: each call starts one candidate further along the list, and falls
back through the rest in order; a separate turn for each candidate list.

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "NAME": "llmkernel_strategy_round_robin.strategy",
    "RoundRobin": "llmkernel_strategy_round_robin.strategy",
    "RoundRobinSettings": "llmkernel_strategy_round_robin.strategy",
    "make": "llmkernel_strategy_round_robin.strategy",
}

if TYPE_CHECKING:
    from llmkernel_strategy_round_robin.strategy import NAME, RoundRobin, RoundRobinSettings, make


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "NAME",
    "RoundRobin",
    "RoundRobinSettings",
    "make",
]
