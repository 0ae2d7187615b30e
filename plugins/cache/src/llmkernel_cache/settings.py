"""The cache's settings: the ``[plugin.cache]`` table."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import attrs

__all__ = [
    "CACHE_OPTION",
    "NAMESPACE_OPTION",
    "REQUEST_OPTIONS",
    "TTL_OPTION",
    "CacheSettings",
    "ModelCacheSettings",
    "default_path",
]

# Request options the cache reads (claimed: never sent upstream)
CACHE_OPTION = "cache"  # options={"cache": False}: neither read nor write
TTL_OPTION = "cache_ttl"  # options={"cache_ttl": 60}: keep this answer 60 s
NAMESPACE_OPTION = "cache_namespace"  # options={"cache_namespace": "x"}: explicit namespace
REQUEST_OPTIONS = frozenset({CACHE_OPTION, TTL_OPTION, NAMESPACE_OPTION})


def default_path(env: Mapping[str, str] | None = None) -> str:
    """``$XDG_CACHE_HOME/llmkernel/cache.db``, else ``~/.cache/llmkernel/cache.db``."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "llmkernel" / "cache.db")


@attrs.frozen(kw_only=True)
class ModelCacheSettings:
    """``[plugin.cache.models."<model as requested>"]``: per model overrides."""

    enabled: bool | None = None
    ttl: float | None = None
    temperature_above_zero: bool | None = None


@attrs.frozen(kw_only=True)
class CacheSettings:
    """Every key is optional. Sizes are bytes of stored JSON; times are seconds.

    The cache is off until ``enabled = true``: answers are reused only when asked.

    ``ttl = 0`` keeps entries until evicted. ``path = ""`` keeps the cache in memory
    only (no SQLite). ``namespace = "tenant"`` gives each ``metadata["tenant"]`` its
    own entries; ``"shared"`` shares them across tenants.

    ``key_refresh`` (seconds) bounds how stale this process's view of the keys in
    SQLite may be: a lookup that misses memory skips SQLite when the key is
    certainly not there, and that certainty covers every answer another process
    stored at least ``key_refresh`` seconds before the lookup (older views make the
    lookup ask SQLite). ``0`` asks SQLite on every memory miss.
    """

    enabled: bool = False
    path: str | None = None
    ttl: float = 86400.0
    max_entries: int = 100_000
    max_bytes: int = 512 * 1024 * 1024
    memory_entries: int = 1_000
    memory_bytes: int = 32 * 1024 * 1024
    namespace: Literal["tenant", "shared"] = "tenant"
    temperature_above_zero: bool = False
    store_truncated: bool = False
    key_refresh: float = 1.0
    models: dict[str, ModelCacheSettings] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        for value, key in (
            (self.ttl, "ttl"),
            (self.max_entries, "max_entries"),
            (self.max_bytes, "max_bytes"),
            (self.memory_entries, "memory_entries"),
            (self.memory_bytes, "memory_bytes"),
            (self.key_refresh, "key_refresh"),
        ):
            if value < 0:
                raise ValueError(f"{key} must not be negative")
        for model, override in self.models.items():
            if override.ttl is not None and override.ttl < 0:
                raise ValueError(f"models.{model}.ttl must not be negative")

    @property
    def resolved_path(self) -> str:
        """The SQLite file, ``~`` expanded; ``""`` for memory only."""
        if self.path is None:
            return default_path()
        return os.path.expanduser(self.path) if self.path else ""
