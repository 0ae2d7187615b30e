"""The ``local-first`` routing strategy for llmkernel.

Local-first: local providers (Ollama, vLLM, LM Studio, llama.cpp on this machine
or network) first, cloud after; within each, config order.

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "LocalFirst": "llmkernel_strategy_local_first.strategy",
    "LocalFirstSettings": "llmkernel_strategy_local_first.strategy",
    "NAME": "llmkernel_strategy_local_first.strategy",
    "is_local_url": "llmkernel_strategy_local_first.strategy",
    "make": "llmkernel_strategy_local_first.strategy",
}

if TYPE_CHECKING:
    from llmkernel_strategy_local_first.strategy import (
        NAME,
        LocalFirst,
        LocalFirstSettings,
        is_local_url,
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
    "LocalFirst",
    "LocalFirstSettings",
    "is_local_url",
    "make",
]
