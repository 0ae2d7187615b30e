"""Circuit-breaker state and health results shared by a fleet (``llmkernel.breakers``
script), so a deployment that failed on one instance cools down on all.

:meth:`SharedBreakers.open` opens a deployment's breaker for some seconds (the
latest end wins), on Redis's clock; after that it is **half-open** for
``half_open`` seconds, during which :meth:`SharedBreakers.claim_probe` lets one
instance of the fleet send the probe (``SET NX`` with an expiry); a success
:meth:`SharedBreakers.close`\\ s it for everyone. Health results
(:meth:`SharedBreakers.put_health`) are kept with a TTL so a stopped checker's
results fade. Every key has a TTL.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs

from llmkernel_redis.keys import part
from llmkernel_redis.scripts import load

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from llmkernel_redis.link import RedisLink

__all__ = ["BREAKERS", "BreakerState", "SharedBreakers"]

BREAKERS = load("breakers.lua", "llmkernel.breakers", 1)
LAYOUT = "brk1"
_US = 1_000_000


@attrs.frozen(kw_only=True)
class BreakerState:
    state: Literal["closed", "open", "half_open"]
    remaining: float  # seconds until half-open (0 unless open)
    reason: str


class SharedBreakers:
    def __init__(self, link: RedisLink, prefix: str, *, owner: str = "") -> None:
        self.link = link
        self.base = f"{prefix}{LAYOUT}:"
        self.owner = owner

    def key(self, deployment: str, kind: str = "b") -> str:
        return f"{self.base}{kind}:{part(deployment)}"

    async def open(
        self, deployment: str, seconds: float, *, reason: str = "", half_open: float = 60.0
    ) -> None:
        """Open ``deployment``'s breaker for ``seconds`` (fleet-wide), then half-open
        for ``half_open`` seconds."""
        args = ["open", math.ceil(seconds * _US), math.ceil(half_open), reason[:200], self.owner]
        await self.link.script(BREAKERS, [self.key(deployment)], args)

    async def states(self, deployments: Sequence[str]) -> dict[str, BreakerState]:
        if not deployments:
            return {}
        keys = [self.key(d) for d in deployments]
        reply = await self.link.script(BREAKERS, keys, ["read"])
        out = {}
        for i, deployment in enumerate(deployments):
            state, left, reason = reply[3 * i : 3 * i + 3]
            out[deployment] = BreakerState(
                state=_text(state),  # type: ignore[arg-type]
                remaining=int(left) / _US,
                reason=_text(reason),
            )
        return out

    async def claim_probe(self, deployment: str, seconds: float) -> bool:
        """Whether this instance sends the half-open probe (one in the fleet per
        ``seconds``)."""
        key, owner = self.key(deployment, "probe"), self.owner or "1"

        async def run(client: Redis) -> bool:
            return bool(await client.set(key, owner, nx=True, px=math.ceil(seconds * 1000)))

        return await self.link.call(run)

    async def close(self, deployment: str) -> None:
        """The probe succeeded: closed for the whole fleet."""
        keys = [self.key(deployment), self.key(deployment, "probe")]

        async def run(client: Redis) -> None:
            await client.unlink(*keys)

        await self.link.call(run)

    async def put_health(
        self, deployment: str, ok: bool, detail: str = "", *, ttl: float = 300.0
    ) -> None:
        """Record a health check's result for ``ttl`` seconds."""
        key = self.key(deployment, "health")
        value = json.dumps({"ok": ok, "detail": detail[:500], "at": time.time(), "by": self.owner})

        async def run(client: Redis) -> None:
            await client.set(key, value, px=math.ceil(ttl * 1000))

        await self.link.call(run)

    async def health(self, deployments: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The latest result per deployment (those without one are left out)."""
        if not deployments:
            return {}
        keys = [self.key(d, "health") for d in deployments]

        async def run(client: Redis) -> list[Any]:
            return list(await client.mget(keys))

        values = await self.link.call(run)
        return {d: json.loads(v) for d, v in zip(deployments, values, strict=True) if v is not None}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
