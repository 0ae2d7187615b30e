"""Circuit-breaker state and health results shared by a fleet (``llmkernel.breakers``
script), so a deployment that failed on one instance cools down on all.

:meth:`SharedBreakers.open` opens a deployment's breaker for some seconds (the
latest end wins), on Redis's clock; after that it is **half-open** for
``half_open`` seconds, during which :meth:`SharedBreakers.claim_probe` lets one
instance of the fleet send the probe (``SET NX`` with an expiry); a success
:meth:`SharedBreakers.close`\\ s it for everyone. Health results
(:meth:`SharedBreakers.put_healths`) are kept with a TTL so a stopped checker's
results fade. :meth:`SharedBreakers.view` reads all of it in one round trip.
Every key has a TTL.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import socket
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs

from llmkernel_redis.keys import part
from llmkernel_redis.scripts import load

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from llmkernel_redis.link import RedisLink

__all__ = ["BREAKERS", "BreakerState", "FleetView", "SharedBreakers"]

BREAKERS = load("breakers.lua", "llmkernel.breakers", 2)
LAYOUT = "brk1"
_US = 1_000_000


@attrs.frozen(kw_only=True)
class BreakerState:
    state: Literal["closed", "open", "half_open"]
    remaining: float  # seconds until half-open (0 unless open)
    reason: str


@attrs.frozen(kw_only=True)
class FleetView:
    """What the fleet knows of one deployment (:meth:`SharedBreakers.view`)."""

    state: Literal["closed", "open", "half_open"]
    remaining: float  # seconds until half-open (0 unless open)
    reason: str
    by: str  # the instance that opened it last ('' when closed)
    probe: str  # the instance holding the half-open probe's claim, or ''


class SharedBreakers:
    """``owner`` names this instance in what it publishes (and holds probe claims
    by): unique per process when not given."""

    def __init__(self, link: RedisLink, prefix: str, *, owner: str = "") -> None:
        self.link = link
        self.base = f"{prefix}{LAYOUT}:"
        self.owner = owner or _instance()

    def key(self, deployment: str, kind: str = "b") -> str:
        return f"{self.base}{kind}:{part(deployment)}"

    def rename(self, owner: str = "") -> None:
        """A new name (unique per process when not given): in a forked child, so
        it never holds its parent's probe claims."""
        self.owner = owner or _instance()

    async def open(
        self, deployment: str, seconds: float, *, reason: str = "", half_open: float = 60.0
    ) -> None:
        """Open ``deployment``'s breaker for ``seconds`` (fleet-wide), then half-open
        for ``half_open`` seconds; a claim on the probe is over (a new cooldown began)."""
        args = ["open", math.ceil(seconds * _US), math.ceil(half_open), reason[:200], self.owner]
        keys = [self.key(deployment), self.key(deployment, "probe")]
        await self.link.script(BREAKERS, keys, args)

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

    async def view(
        self, deployments: Sequence[str], health: Sequence[str] = ()
    ) -> tuple[dict[str, FleetView], dict[str, dict[str, Any]]]:
        """In one round trip: the fleet's state of each deployment, and the latest
        health result of each name in ``health`` (those without one left out)."""
        if not deployments and not health:
            return {}, {}
        n = len(deployments)
        keys = [self.key(d) for d in deployments]
        keys += [self.key(d, "probe") for d in deployments]
        keys += [self.key(h, "health") for h in health]
        reply = await self.link.script(BREAKERS, keys, ["view", n])
        states = {}
        for i, deployment in enumerate(deployments):
            state, left, reason, by, probe = reply[5 * i : 5 * i + 5]
            states[deployment] = FleetView(
                state=_text(state),  # type: ignore[arg-type]
                remaining=int(left) / _US,
                reason=_text(reason),
                by=_text(by),
                probe=_text(probe),
            )
        results = {}
        for name, value in zip(health, reply[5 * n :], strict=True):
            if value:
                with contextlib.suppress(ValueError, TypeError):
                    found = json.loads(value)
                    if isinstance(found, dict):
                        results[name] = found
        return states, results

    async def claim_probe(self, deployment: str, seconds: float) -> bool:
        """Whether this instance sends the half-open probe: one claim in the fleet,
        held for ``seconds`` (then another instance may claim it) or until a result
        is published; claiming again while holding it renews it."""
        key = self.key(deployment, "probe")
        args = ["claim", self.owner, max(1, math.ceil(seconds * 1000))]
        return bool(await self.link.script(BREAKERS, [key], args))

    async def renew_probe(self, deployment: str, seconds: float) -> bool:
        """Hold this instance's claim ``seconds`` longer (its probe still runs);
        ``False`` when it holds none any more (it expired, or a result ended it)."""
        key = self.key(deployment, "probe")
        args = ["renew", self.owner, max(1, math.ceil(seconds * 1000))]
        return bool(await self.link.script(BREAKERS, [key], args))

    async def release_probe(self, deployment: str) -> bool:
        """Give back this instance's claim without a result (the probe was not sent)."""
        key = self.key(deployment, "probe")
        return bool(await self.link.script(BREAKERS, [key], ["unclaim", self.owner]))

    async def close(self, deployment: str) -> bool:
        """The probe succeeded: closed for the whole fleet (unless an opening that
        began meanwhile is still running: then ``False``, it stays)."""
        keys = [self.key(deployment), self.key(deployment, "probe")]
        return bool(await self.link.script(BREAKERS, keys, ["close"]))

    async def put_health(
        self, deployment: str, ok: bool, detail: str = "", *, ttl: float = 300.0
    ) -> None:
        """Record a health check's result for ``ttl`` seconds."""
        await self.put_healths({deployment: (ok, detail)}, ttl=ttl)

    async def put_healths(
        self, results: Mapping[str, tuple[bool, str]], *, ttl: float = 300.0
    ) -> None:
        """Record several health checks' results (``name: (ok, detail)``) for ``ttl``
        seconds, in one round trip."""
        if not results:
            return
        at, ms = time.time(), math.ceil(ttl * 1000)
        values = {
            self.key(name, "health"): json.dumps(
                {"ok": ok, "detail": detail[:500], "at": at, "by": self.owner}
            )
            for name, (ok, detail) in results.items()
        }

        async def run(client: Redis) -> None:
            async with client.pipeline(transaction=False) as pipe:
                for key, value in values.items():
                    pipe.set(key, value, px=ms)
                await pipe.execute()

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


def _instance() -> str:
    """``host:pid:random``: unique per process (a forked worker gets its own)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
