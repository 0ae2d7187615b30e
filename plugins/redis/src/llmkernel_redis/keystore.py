"""The gateway's key records in Redis (``llmkernel.keys`` script), so every
instance sees a created, changed or revoked key within its poll interval.

A record is the key store's JSON (name, hash, budget, limits, expiry...; never a
secret). :meth:`SharedKeys.put` sets a record and the secret hashes that lead to it
(several during a rotation's grace period) in one script call, dropping the hashes
the name had before; :meth:`SharedKeys.delete` removes both. Every change bumps a
version counter and publishes it on a channel: an instance polls
:meth:`SharedKeys.version` (one ``GET``; every second keeps it within 2 s) or
subscribes, and reloads when it moved. Records are data, not a cache: no TTL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llmkernel_redis.scripts import load

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from llmkernel_redis.link import RedisLink

__all__ = ["KEYS", "SharedKeys"]

KEYS = load("keystore.lua", "llmkernel.keys", 1)
LAYOUT = "keys1"


class SharedKeys:
    """Key records by name, found by secret hash, with a version counter."""

    def __init__(self, link: RedisLink, prefix: str) -> None:
        self.link = link
        base = f"{prefix}{LAYOUT}:"
        self.records, self.hashes, self.owned = f"{base}records", f"{base}hashes", f"{base}owned"
        self.counter = f"{base}version"
        self.channel = f"{base}changed"

    def _keys(self) -> list[str]:
        return [self.records, self.hashes, self.owned, self.counter]

    async def put(self, name: str, record: Mapping[str, Any], hashes: Sequence[str]) -> int:
        """Set ``name``'s record, found by each of ``hashes``; the new version."""
        text = json.dumps(dict(record), sort_keys=True, separators=(",", ":"))
        args = ["put", self.channel, name, text, json.dumps(list(hashes))]
        return int(await self.link.script(KEYS, self._keys(), args))

    async def delete(self, name: str) -> int:
        """Remove ``name`` (a revoked key); the new version."""
        return int(await self.link.script(KEYS, self._keys(), ["delete", self.channel, name]))

    async def get(self, name: str) -> dict[str, Any] | None:
        async def run(client: Redis) -> Any:
            value: Any = await client.hget(self.records, name)
            return value

        raw = await self.link.call(run)
        return json.loads(raw) if raw is not None else None

    async def by_hash(self, secret_hash: str) -> tuple[str, dict[str, Any]] | None:
        """The name and record a secret's hash leads to, or ``None``."""
        records, hashes = self.records, self.hashes

        async def run(client: Redis) -> tuple[Any, Any]:
            name: Any = await client.hget(hashes, secret_hash)
            if name is None:
                return None, None
            raw: Any = await client.hget(records, name.decode())
            return name, raw

        name, raw = await self.link.call(run)
        if name is None or raw is None:
            return None
        return name.decode(), json.loads(raw)

    async def all(self) -> tuple[int, dict[str, dict[str, Any]]]:
        """The version and every record, read together."""

        async def run(client: Redis) -> list[Any]:
            pipe = client.pipeline(transaction=True)
            pipe.get(self.counter)
            pipe.hgetall(self.records)
            return list(await pipe.execute())

        version, raw = await self.link.call(run)
        records = {k.decode(): json.loads(v) for k, v in raw.items()}
        return int(version or 0), records

    async def version(self) -> int:
        """The change counter (``0`` before the first change)."""

        async def run(client: Redis) -> Any:
            return await client.get(self.counter)

        return int(await self.link.call(run) or 0)
