"""The ``local-first`` routing strategy for llmkernel.

Local-first: local providers (Ollama, vLLM, LM Studio, llama.cpp on this machine
or network) first, cloud after; within each, config order.
"""

from __future__ import annotations

from llmkernel_strategy_local_first.strategy import (
    NAME,
    LocalFirst,
    LocalFirstSettings,
    is_local_url,
    make,
)

__all__ = ["NAME", "LocalFirst", "LocalFirstSettings", "is_local_url", "make"]
