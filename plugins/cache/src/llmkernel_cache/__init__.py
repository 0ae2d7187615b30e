"""llmkernel-cache: an exact-match response cache, memory in front of SQLite."""

from __future__ import annotations

from llmkernel_cache.cache import ResponseCache
from llmkernel_cache.key import canonical, request_key
from llmkernel_cache.settings import CacheSettings
from llmkernel_cache.store import Entry, MemoryLRU, SQLiteStore, Store

__all__ = [
    "CacheSettings",
    "Entry",
    "MemoryLRU",
    "ResponseCache",
    "SQLiteStore",
    "Store",
    "canonical",
    "request_key",
]
