"""llmkernel-cache: an exact-match response cache, memory in front of SQLite, and a
guarded semantic layer behind it.

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "CacheSettings": "llmkernel_cache.settings",
    "Entry": "llmkernel_cache.store",
    "MemoryLRU": "llmkernel_cache.store",
    "ResponseCache": "llmkernel_cache.cache",
    "SQLiteStore": "llmkernel_cache.store",
    "SemanticSettings": "llmkernel_cache.settings",
    "VectorRow": "llmkernel_cache.store",
    "Store": "llmkernel_cache.store",
    "canonical": "llmkernel_cache.key",
    "request_key": "llmkernel_cache.key",
}

if TYPE_CHECKING:
    from llmkernel_cache.cache import ResponseCache
    from llmkernel_cache.key import canonical, request_key
    from llmkernel_cache.settings import CacheSettings, SemanticSettings
    from llmkernel_cache.store import Entry, MemoryLRU, SQLiteStore, Store, VectorRow


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CacheSettings",
    "Entry",
    "MemoryLRU",
    "ResponseCache",
    "SQLiteStore",
    "SemanticSettings",
    "Store",
    "VectorRow",
    "canonical",
    "request_key",
]
