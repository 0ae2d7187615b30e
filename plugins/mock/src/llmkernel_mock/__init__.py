"""Simulated LLM provider for llmkernel: offline, deterministic, with configurable
latency and failures.

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "MockProvider": "llmkernel_mock.provider",
    "MockReply": "llmkernel_mock.provider",
    "MockSettings": "llmkernel_mock.settings",
}

if TYPE_CHECKING:
    from llmkernel_mock.provider import MockProvider, MockReply
    from llmkernel_mock.settings import MockSettings


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "MockProvider",
    "MockReply",
    "MockSettings",
]
