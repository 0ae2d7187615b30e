"""Exact-cache entries in Redis, on the cache link (``[redis] cache_url``).

An entry is one Redis string under ``<prefix>c1:<namespace>:<key>`` with a TTL
(always: a cache entry without one is refused), so the cache's own Redis can evict
with ``maxmemory-policy allkeys-lru`` without ever touching limiter or budget keys
(those live on ``url``). The namespace (a tenant, or ``""``) is hashed, so a
tenant's name can neither collide with another's nor act as a pattern in
:meth:`SharedCache.clear`. Values are the cache plugin's bytes, stored as given.
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING, Any

from llmkernel_redis.keys import part

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from llmkernel_redis.link import RedisLink

__all__ = ["SharedCache"]

LAYOUT = "c1"
_SCAN = 500


def _namespace(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class SharedCache:
    """Get, set, delete and clear cache entries per namespace."""

    def __init__(self, link: RedisLink, prefix: str) -> None:
        self.link = link
        self.prefix = prefix

    def key(self, namespace: str, key: str) -> str:
        return f"{self.prefix}{LAYOUT}:{_namespace(namespace)}:{part(key)}"

    async def get(self, namespace: str, key: str) -> bytes | None:
        name = self.key(namespace, key)

        async def run(client: Redis) -> Any:
            return await client.get(name)

        value: bytes | None = await self.link.call(run)
        return value

    async def set(self, namespace: str, key: str, value: bytes, *, ttl: float) -> None:
        """Store ``value`` for ``ttl`` seconds (required: every entry expires)."""
        if not ttl > 0 or math.isinf(ttl):
            raise ValueError("a shared cache entry needs a finite positive ttl")
        name = self.key(namespace, key)
        ms = max(1, math.ceil(ttl * 1000))

        async def run(client: Redis) -> None:
            await client.set(name, value, px=ms)

        await self.link.call(run)

    async def delete(self, namespace: str, key: str) -> bool:
        name = self.key(namespace, key)

        async def run(client: Redis) -> bool:
            return int(await client.unlink(name)) > 0

        return await self.link.call(run)

    async def clear(self, namespace: str | None = None) -> int:
        """Remove every entry of ``namespace`` (all namespaces when ``None``);
        returns how many. Scans in pages, never ``KEYS``."""
        pattern = f"{self.prefix}{LAYOUT}:" + (
            "*" if namespace is None else f"{_namespace(namespace)}:*"
        )

        async def run(client: Redis) -> int:
            removed = 0
            batch: list[bytes] = []
            async for name in client.scan_iter(match=pattern, count=_SCAN):
                batch.append(name)
                if len(batch) >= _SCAN:
                    removed += int(await client.unlink(*batch))
                    batch = []
            if batch:
                removed += int(await client.unlink(*batch))
            return removed

        return await self.link.call(run)
