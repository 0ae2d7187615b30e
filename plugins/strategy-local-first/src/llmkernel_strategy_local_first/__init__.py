"""The ``local-first`` routing strategy for llmkernel.

Local-first: local providers (Ollama, vLLM, LM Studio, llama.cpp on this machine
or network) first, cloud after; within each, config order.

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "llmkernel_strategy_local_first.strategy": [
            "LocalFirst",
            "LocalFirstSettings",
            "NAME",
            "is_local_url",
            "make",
        ],
    },
)

if TYPE_CHECKING:
    from llmkernel_strategy_local_first.strategy import (
        NAME,
        LocalFirst,
        LocalFirstSettings,
        is_local_url,
        make,
    )


__all__ = [
    "NAME",
    "LocalFirst",
    "LocalFirstSettings",
    "is_local_url",
    "make",
]
