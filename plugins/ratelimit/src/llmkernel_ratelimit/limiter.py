"""Waiting for room, fairly, without blocking the event loop.

Waiters queue in arrival order per bucket; only a waiter at the head of every
queue it is in may take, so a small request cannot starve a large one that came
first. A waiter sleeps until the room it needs should be free, or until a release
or a provider's headers change the picture, and never past its deadline. Works
with callers on several event loops (the kernel's sync portal and the user's own).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

import attrs

from llmkernel_ratelimit.store import Claim, LimitStore, Ticket

__all__ = ["Limiter", "NoRoom"]


class NoRoom(Exception):
    """No room before the deadline (or ever): ``retry_after`` is the estimate."""

    def __init__(self, retry_after: float, keys: Sequence[str], *, waited: bool = False) -> None:
        super().__init__(f"no room on {', '.join(keys)}")
        self.retry_after = retry_after
        self.keys = list(keys)
        self.waited = waited  # the attempt was allowed to wait (until its deadline)


@attrs.define(kw_only=True, eq=False)
class _Waiter:
    claims: Sequence[Claim]
    loop: asyncio.AbstractEventLoop
    event: asyncio.Event

    def wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # its loop is closed: it is gone
            self.loop.call_soon_threadsafe(self.event.set)


class Limiter:
    """Takes claims from a :class:`LimitStore`, waiting in line when asked to."""

    def __init__(self, store: LimitStore, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.clock = clock
        self._queues: dict[str, deque[_Waiter]] = {}
        self._lock = threading.Lock()

    def waiting(self) -> dict[str, int]:
        with self._lock:
            return {k: len(q) for k, q in self._queues.items() if q}

    def try_take(self, claims: Sequence[Claim]) -> Ticket | float:
        """Take at once when nobody waits ahead; else the estimated wait."""
        with self._lock:
            queues = self._queues
            if queues and any(queues.get(c.key) for c in claims):
                return max(self.store.wait_for(claims, self.clock()), 1e-3)
            return self.store.take(claims, self.clock())

    async def take(
        self,
        claims: Sequence[Claim],
        deadline: float,
        *,
        wait: bool,
        first: float | None = None,
    ) -> Ticket:
        """Take ``claims``; in wait mode queue until they fit or ``deadline``
        (monotonic) passes. Raises :class:`NoRoom` with the estimated wait.
        ``first`` is the wait :meth:`try_take` just answered, when the caller
        tried it already."""
        keys = [c.key for c in claims]
        if first is None:
            got = self.try_take(claims)
            if isinstance(got, Ticket):
                return got
            first = got
        now = self.clock()
        if not wait or math.isinf(first) or now + first > deadline:
            raise NoRoom(first, keys, waited=wait)
        waiter = _Waiter(claims=claims, loop=asyncio.get_running_loop(), event=asyncio.Event())
        with self._lock:
            for key in keys:
                self._queues.setdefault(key, deque()).append(waiter)
        try:
            while True:
                with self._lock:
                    now = self.clock()
                    if self._at_head(waiter):
                        got = self.store.take(claims, now)
                        if isinstance(got, Ticket):
                            self._leave(waiter)
                            return got
                        delay = got
                    else:
                        delay = None  # woken when the waiters ahead move
                    remaining = deadline - now
                if delay is not None and (math.isinf(delay) or now + delay > deadline):
                    raise NoRoom(delay, keys, waited=True)
                if remaining <= 0:
                    raise NoRoom(delay if delay is not None else 0.0, keys, waited=True)
                timeout = remaining if delay is None else min(delay, remaining)
                waiter.event.clear()
                try:
                    async with asyncio.timeout(timeout):
                        await waiter.event.wait()
                except TimeoutError:
                    pass
        finally:
            with self._lock:
                self._leave(waiter)

    def notify(self, keys: Sequence[str] | None = None) -> None:
        """Room may have changed on ``keys`` (all when ``None``): wake the heads."""
        if not self._queues:
            # nobody waits; one who queues after this look tries the store itself
            # (after queueing), so it sees the room made before this call
            return
        with self._lock:
            queues = (
                self._queues.values()
                if keys is None
                else [q for k in keys if (q := self._queues.get(k))]
            )
            heads = {id(q[0]): q[0] for q in queues if q}
        for waiter in heads.values():
            waiter.wake()

    def _at_head(self, waiter: _Waiter) -> bool:
        return all(self._queues[c.key][0] is waiter for c in waiter.claims)

    def _leave(self, waiter: _Waiter) -> None:
        """Out of every queue; the new heads are woken to try."""
        woken = []
        for claim in waiter.claims:
            queue = self._queues.get(claim.key)
            if not queue:
                continue
            was_head = queue[0] is waiter
            try:
                queue.remove(waiter)
            except ValueError:
                continue
            if was_head and queue:
                woken.append(queue[0])
            if not queue:
                del self._queues[claim.key]
        for head in woken:
            head.wake()
