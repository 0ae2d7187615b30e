"""Exact entries shared by every instance of a fleet, in Redis (``[redis]`` set,
``[plugin.cache] shared`` not false): the same namespaces and keys as the local
store, each entry with its expiry and a Redis TTL (``[redis] cache_url`` when set,
so Redis's own eviction on that server bounds their size).

The in-process LRU stays in front, and SQLite behind. When Redis is slow or gone
(its link is degraded, :class:`llmkernel_redis.Unavailable`), every call here
answers as a miss or does nothing: the cache works from memory and SQLite until
the link recovers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel
    from llmkernel_redis.cache import SharedCache

__all__ = ["FOREVER", "RemoteEntries", "remote_for"]

#: the Redis TTL of an entry kept "until evicted" (``ttl = 0``): Redis needs one
FOREVER = 30 * 86400.0


class RemoteEntries:
    """Entries as ``<expiry>\\n<body>`` bytes in :class:`SharedCache`."""

    def __init__(self, entries: SharedCache) -> None:
        from llmkernel_redis.link import Unavailable

        self.entries = entries
        self._unavailable = Unavailable

    async def get(self, namespace: str, key: str, now: float) -> tuple[str, float] | None:
        """The body and expiry (0: none) stored under ``key``, or ``None``."""
        try:
            value = await self.entries.get(namespace, key)
        except self._unavailable:
            return None
        if value is None:
            return None
        head, _, body = value.partition(b"\n")
        try:
            expires = float(head)
        except ValueError:  # not an entry of this layout: a miss
            return None
        if expires and expires <= now:
            return None
        return body.decode("utf-8", "surrogatepass"), expires

    async def put(self, namespace: str, key: str, body: str, expires: float, now: float) -> None:
        ttl = expires - now if expires else FOREVER
        if ttl <= 0:
            return
        value = repr(expires).encode() + b"\n" + body.encode("utf-8", "surrogatepass")
        try:
            await self.entries.set(namespace, key, value, ttl=ttl)
        except self._unavailable:
            return

    async def delete(self, namespace: str, key: str) -> bool:
        try:
            return await self.entries.delete(namespace, key)
        except self._unavailable:
            return False

    async def clear(self, namespace: str | None) -> int:
        try:
            return await self.entries.clear(namespace)
        except self._unavailable:
            return 0


def remote_for(kernel: Kernel) -> RemoteEntries | None:
    """The fleet's entries when ``[redis]`` is set and the cache does not opt out."""
    try:
        from llmkernel_redis.shared import shared_for
    except ImportError as exc:
        from llmkernel.errors import ConfigError

        raise ConfigError(
            "[redis] is set but llmkernel-redis is not installed: "
            "pip install 'llmkernel-cache[redis]', or set [plugin.cache] shared = false"
        ) from exc
    shared = shared_for(kernel, "cache")
    return RemoteEntries(shared.cache_entries()) if shared is not None else None
