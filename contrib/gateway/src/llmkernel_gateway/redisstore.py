"""The key store in the shared Redis (``[redis]`` set): every instance of a fleet
sees a key created, changed or revoked on any of them within its poll.

Key records go through ``llmkernel-redis``'s key-record primitive
(:class:`llmkernel_redis.SharedKeys`: records by name, found by secret hash, a
version counter bumped and published on every change). Beside it, under
``<key_prefix>gateway1:``: the deployments' live settings (a hash) and a counter
of their changes and reloads, the reload generation, the keys' last use (a sorted
set written with ``ZADD GT``, so the latest use wins whatever the order), and the
audit trail (a list, the newest 10,000 entries).

A change of one key is read, changed and written back: two admins changing the
same key in the same instant may see one change win. The gateway has its own
:class:`llmkernel_redis.Shared` (not the kernel's, which a reconfigure closes).
"""

from __future__ import annotations

import json
import time
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any

from llmkernel_gateway.keystore import AUDIT_LIMIT, Change, Snapshot, instance_name
from llmkernel_gateway.records import KeyRecord

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from llmkernel.config import Config
    from llmkernel_redis import Shared

__all__ = ["AUDIT_KEPT", "FLEET_FRESH", "RedisKeyStore"]

LAYOUT = "gateway1"
#: audit entries kept in Redis
AUDIT_KEPT = 10_000
#: seconds an instance's published totals count for the fleet's dashboard
FLEET_FRESH = 60.0
#: instances' shares read at most (a hash field per ledger)
_FLEET_MAX = 1000


class RedisKeyStore:
    def __init__(self, shared: Shared) -> None:
        from llmkernel_redis.settings import redact_url

        self.shared = shared
        self.records = shared.keys()
        self.link = shared.main
        base = f"{shared.prefix}{LAYOUT}:"
        self.control = f"{base}control"
        self.deployments = f"{base}deployments"
        self.generation = f"{base}generation"
        self.used = f"{base}lastused"
        self.audit_list = f"{base}audit"
        self.fleet = f"{base}fleet"
        self.where = f"Redis {redact_url(shared.settings.url)}"

    @classmethod
    def from_config(cls, config: Config) -> RedisKeyStore:
        from llmkernel_redis import Shared, parse_settings

        return cls(Shared(parse_settings(config.redis, source=config.source)))

    def __repr__(self) -> str:
        return f"<RedisKeyStore {self.where}>"

    async def stamp(self) -> Hashable:
        keys_version = self.records.counter

        async def run(client: Redis) -> tuple[Any, Any]:
            pipe = client.pipeline(transaction=False)
            pipe.get(keys_version)
            pipe.get(self.control)
            first, second = await pipe.execute()
            return first, second

        first, second = await self.link.call(run)
        return (int(first or 0), int(second or 0))

    async def snapshot(self) -> Snapshot:
        stamp = await self.stamp()
        version, raw = await self.records.all()

        async def run(client: Redis) -> tuple[Any, Any]:
            pipe = client.pipeline(transaction=True)
            pipe.hgetall(self.deployments)
            pipe.get(self.generation)
            deployments, generation = await pipe.execute()
            return deployments, generation

        deployments, generation = await self.link.call(run)
        return Snapshot(
            stamp=stamp,
            records={name: KeyRecord.from_json(data) for name, data in raw.items()},
            deployments={k.decode(): json.loads(v) for k, v in deployments.items()},
            generation=int(generation or 0),
            keyed=bool(raw) or int(version or 0) > 0,  # a key was ever written
        )

    async def change_key(
        self, name: str, change: Change, *, actor: str, action: str, details: Mapping[str, Any]
    ) -> KeyRecord | None:
        raw = await self.records.get(name)
        current = KeyRecord.from_json(raw) if raw is not None else None
        new = change(current)
        if new is None:
            await self.records.delete(name)
            await self.link.call(lambda client: client.zrem(self.used, name))
        else:
            now = time.time()
            digests = [s.digest for s in new.live_secrets(now)]
            await self.records.put(name, new.to_json(), digests)
        await self.record_audit(actor=actor, action=action, target=name, details=details)
        return new

    async def set_deployment(
        self, name: str, settings: Mapping[str, Any], *, actor: str, details: Mapping[str, Any]
    ) -> None:
        text = json.dumps(dict(settings), sort_keys=True)

        async def run(client: Redis) -> Any:
            pipe = client.pipeline(transaction=True)
            if settings:
                pipe.hset(self.deployments, name, text)
            else:
                pipe.hdel(self.deployments, name)
            pipe.incr(self.control)
            return await pipe.execute()

        await self.link.call(run)
        await self.record_audit(
            actor=actor, action="deployment.update", target=name, details=details
        )

    async def request_reload(self, *, actor: str) -> int:
        async def run(client: Redis) -> Any:
            pipe = client.pipeline(transaction=True)
            pipe.incr(self.generation)
            pipe.incr(self.control)
            return await pipe.execute()

        generation, _ = await self.link.call(run)
        await self.record_audit(
            actor=actor, action="config.reload", target="", details={"generation": generation}
        )
        return int(generation)

    async def record_audit(self, *, actor: str, action: str, target: str, details: Any) -> None:
        entry = json.dumps(
            {
                "ts": time.time(),
                "actor": actor,
                "action": action,
                "target": target,
                "details": details,
                "instance": instance_name(),
            },
            sort_keys=True,
        )

        async def run(client: Redis) -> Any:
            pipe = client.pipeline(transaction=True)
            pipe.lpush(self.audit_list, entry)
            pipe.ltrim(self.audit_list, 0, AUDIT_KEPT - 1)
            return await pipe.execute()

        await self.link.call(run)

    async def touch(self, used: Mapping[str, float]) -> None:
        if not used:
            return
        mapping = dict(used)
        await self.link.call(lambda client: client.zadd(self.used, mapping, gt=True))

    async def last_used(self) -> dict[str, float]:
        async def run(client: Redis) -> Any:
            return await client.zrange(self.used, 0, -1, withscores=True)

        pairs = await self.link.call(run)
        return {name.decode(): float(score) for name, score in pairs}

    async def audit(self, limit: int = 100) -> list[dict[str, Any]]:
        limit = max(1, min(int(limit), AUDIT_LIMIT))

        async def run(client: Redis) -> Any:
            return await client.lrange(self.audit_list, 0, limit - 1)

        return [json.loads(item) for item in await self.link.call(run)]

    async def publish_share(self, name: str, share: Mapping[str, Any], now: float) -> None:
        """This instance's ledger totals (``name``: its host and ledger file, so the
        workers of one instance, or instances sharing one ledger, count once)."""
        text = json.dumps({**share, "at": now, "name": name}, sort_keys=True)

        async def run(client: Redis) -> Any:
            pipe = client.pipeline(transaction=False)
            pipe.hset(self.fleet, name, text)
            pipe.expire(self.fleet, 86400)
            return await pipe.execute()

        await self.link.call(run)

    async def fleet_shares(self, now: float) -> list[dict[str, Any]]:
        """Every instance's share published in the last :data:`FLEET_FRESH` seconds
        (older than a day: removed)."""

        async def run(client: Redis) -> Any:
            return await client.hgetall(self.fleet)

        found = await self.link.call(run)
        fresh, dead = [], []
        for name, raw in list(found.items())[:_FLEET_MAX]:
            try:
                entry = json.loads(raw)
                at = float(entry["at"])
            except (ValueError, KeyError, TypeError):
                dead.append(name)
                continue
            if at >= now - FLEET_FRESH:
                fresh.append(entry)
            elif at < now - 86400:
                dead.append(name)
        if dead:
            await self.link.call(lambda client: client.hdel(self.fleet, *dead))
        return sorted(fresh, key=lambda e: str(e.get("name")))

    async def aclose(self) -> None:
        await self.shared.aclose()
