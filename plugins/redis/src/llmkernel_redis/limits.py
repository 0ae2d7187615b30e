"""Rate-limit windows in Redis: one script call decides a whole request.

:meth:`SharedWindows.take` checks every bucket a request counts against (key,
tenant, model, deployment, learned provider limits) and charges all of them, or
none, in one ``llmkernel.ratelimit`` script call, with the sliding-window rule of
``llmkernel_ratelimit.store.MemoryStore`` (never more than the limit in any
window) on Redis's clock. Amounts are integers (a request is 1, tokens count
themselves); a limit is floored to an integer, which admits exactly what the
fractional limit admits since every amount is whole.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from llmkernel_redis.keys import part
from llmkernel_redis.scripts import Script, load

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from llmkernel_redis.link import RedisLink

__all__ = ["RATELIMIT", "BucketState", "SharedWindows", "Taken", "WindowClaim"]

RATELIMIT = load("ratelimit.lua", "llmkernel.ratelimit", 1)
LAYOUT = "rl1"
_US = 1_000_000


@attrs.frozen(kw_only=True)
class WindowClaim:
    """``amount`` of bucket ``bucket``, which admits ``limit`` per ``window``
    seconds (``limit=None``: the limit Redis learned for it, else none)."""

    bucket: str
    limit: float | None
    window: float
    amount: float


@attrs.frozen(kw_only=True)
class Taken:
    """A take's answer: admitted (``used`` per claim after it, when known), or the
    seconds until it might fit (``inf``: never) and which claim stood in the way."""

    ok: bool
    wait: float = 0.0
    blocked_by: int | None = None
    used: tuple[int, ...] = ()


@attrs.frozen(kw_only=True)
class BucketState:
    used: int
    limit: int | None
    blocked_for: float
    admissions: int


def _us(seconds: float) -> int:
    return max(0, math.ceil(seconds * _US))


def _amount(value: float) -> int:
    return max(0, math.ceil(value - 1e-9))


class SharedWindows:
    """The ``llmkernel.ratelimit`` script's operations on one Redis link."""

    def __init__(self, link: RedisLink, prefix: str, *, script: Script = RATELIMIT) -> None:
        self.link = link
        self.prefix = prefix
        self.script = script

    def keys(self, bucket: str) -> tuple[str, str]:
        """The hash and the sorted set of ``bucket``."""
        base = f"{self.prefix}{LAYOUT}:{part(bucket)}"
        return base, f"{base}:z"

    async def take(self, admission: str, claims: Sequence[WindowClaim]) -> Taken:
        """Admit ``claims`` as one admission named ``admission`` (unique; taking the
        same name again is a no-op that answers admitted)."""
        keys: list[str] = []
        args: list[object] = ["take", admission, len(claims)]
        for claim in claims:
            keys.extend(self.keys(claim.bucket))
            limit = -1 if claim.limit is None or math.isinf(claim.limit) else int(claim.limit)
            args += [max(limit, -1), _us(claim.window), _amount(claim.amount)]
        reply = await self.link.script(self.script, keys, args)
        if int(reply[0]) == 1:
            return Taken(ok=True, used=tuple(int(u) for u in reply[1:]))
        wait = int(reply[1])
        return Taken(
            ok=False,
            wait=math.inf if wait < 0 else wait / _US,
            blocked_by=int(reply[2]) - 1,
        )

    async def correct(self, admission: str, amounts: Sequence[tuple[str, float, float]]) -> None:
        """Set what ``admission`` holds in each ``(bucket, window, amount)``."""
        keys: list[str] = []
        args: list[object] = ["correct", admission, len(amounts)]
        for bucket, window, amount in amounts:
            keys.extend(self.keys(bucket))
            args += [_us(window), _amount(amount)]
        await self.link.script(self.script, keys, args)

    async def absorb(self, entries: Sequence[tuple[str, str, float, float, float]]) -> int:
        """Count ``(admission, bucket, age, window, amount)`` entries admitted
        elsewhere (locally, while Redis was away) at their age; those Redis has
        already are skipped. Returns how many were added."""
        keys: list[str] = []
        args: list[object] = ["absorb", len(entries)]
        for admission, bucket, age, window, amount in entries:
            keys.extend(self.keys(bucket))
            args += [admission, _us(age), _us(window), _amount(amount)]
        return int(await self.link.script(self.script, keys, args))

    async def block(self, bucket: str, seconds: float, window: float) -> None:
        """Admit nothing on ``bucket`` for ``seconds`` (a provider's Retry-After)."""
        await self.link.script(self.script, self.keys(bucket), ["block", _us(seconds), _us(window)])

    async def observe(
        self, bucket: str, limit: float, remaining: float, reset: float, window: float
    ) -> None:
        """A provider reported ``remaining`` of ``limit`` until ``reset`` seconds."""
        await self.link.script(
            self.script,
            self.keys(bucket),
            ["observe", int(limit), int(remaining), _us(reset), _us(window)],
        )

    async def state(self, bucket: str) -> BucketState:
        """What Redis holds for ``bucket`` now (for tests and the status page)."""
        h, z = self.keys(bucket)

        async def read(client: Redis) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for name in ("u", "l", "b"):
                pipe.hget(h, name)
            pipe.zcard(z)
            pipe.time()
            return list(await pipe.execute())

        used, limit, blocked, count, now = await self.link.call(read)
        now_us = int(now[0]) * _US + int(now[1])
        return BucketState(
            used=int(used or 0),
            limit=int(limit) if limit is not None else None,
            blocked_for=max(0, int(blocked or 0) - now_us) / _US,
            admissions=int(count),
        )
