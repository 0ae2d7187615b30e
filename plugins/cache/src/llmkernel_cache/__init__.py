"""llmkernel-cache: an exact-match response cache, memory in front of SQLite, and a
guarded semantic layer behind it.

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "llmkernel_cache.settings": ["CacheSettings", "SemanticSettings"],
        "llmkernel_cache.store": ["Entry", "MemoryLRU", "SQLiteStore", "VectorRow", "Store"],
        "llmkernel_cache.cache": ["ResponseCache"],
        "llmkernel_cache.key": ["canonical", "request_key"],
    },
)

if TYPE_CHECKING:
    from llmkernel_cache.cache import ResponseCache
    from llmkernel_cache.key import canonical, request_key
    from llmkernel_cache.settings import CacheSettings, SemanticSettings
    from llmkernel_cache.store import Entry, MemoryLRU, SQLiteStore, Store, VectorRow


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
