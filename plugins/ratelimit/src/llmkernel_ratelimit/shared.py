"""The limits of a whole fleet: a :class:`LimitStore` on Redis (``[redis]``).

Every attempt's claims (key, tenant, model, deployment, learned provider limits) are
decided in one call of the ``llmkernel.ratelimit`` script (``llmkernel_redis``): all
admitted or none, by the same sliding-window rule as :class:`MemoryStore`, on
Redis's clock. Token claims reserve the estimate; the gate's correction (the real
usage) is sent after the call, off the hot path.

When Redis is unreachable (``llmkernel_redis`` says so: its link is degraded) the
store admits from a local :class:`MemoryStore` at ``limit / instances`` (``[redis]
instances``), or refuses every attempt with ``[redis] fail_closed = true``. What it
admitted locally is handed to Redis when Redis answers again, at its age, so those
admissions count fleet-wide for the rest of their window; an admission whose take
had reached Redis before its answer was lost is recognized by its id and not
counted twice.

Waiting (``mode = "wait"``) keeps a first-come-first-served line per bucket in
this process; across instances, waiters ask Redis again when their room should be
free (at most every ``POLL`` seconds, since another instance's corrections can free
room earlier).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from itertools import count
from typing import TYPE_CHECKING, Any

import attrs

from llmkernel import log
from llmkernel.errors import RefusedError
from llmkernel_ratelimit.limiter import Limiter, NoRoom, _Waiter
from llmkernel_ratelimit.store import Claim, MemoryStore, Ticket, WindowState

if TYPE_CHECKING:
    from llmkernel_redis.limits import SharedWindows
    from llmkernel_redis.shared import Shared

__all__ = ["POLL", "SharedLimiter", "SharedStore", "SharedTicket"]

#: the longest a waiter sleeps before asking Redis again
POLL = 0.25
_INF = float("inf")


@attrs.define(kw_only=True, eq=False)
class SharedTicket(Ticket):
    """One admission: ``id`` names it in Redis; ``local`` is the local store's
    ticket when it was admitted locally (Redis away), ``absorbed`` once Redis has
    been told."""

    id: str
    claims: tuple[Claim, ...]
    local: Ticket | None = None
    local_store: MemoryStore | None = None
    taken_at: float = 0.0
    absorbed: bool = False


class SharedStore:
    """Sliding windows in Redis, with a local fallback at limit/N."""

    def __init__(
        self,
        windows: SharedWindows,
        *,
        instances: int = 1,
        fail_closed: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.windows = windows
        self.link = windows.link
        self.instances = instances
        self.fail_closed = fail_closed
        self.clock = clock
        self.local = MemoryStore()
        self._ids = count()
        self._new_prefix()
        self._pending: dict[str, SharedTicket] = {}  # admitted locally, not absorbed
        self._seen: dict[str, tuple[float, float, float, float]] = {}  # limit, window, used, at
        self._tasks: set[asyncio.Task[None]] = set()
        self.admitted_locally = 0
        self.link.on_recover(self.absorb)

    def _new_prefix(self) -> None:
        self._prefix = f"{os.getpid():x}.{os.urandom(6).hex()}."

    def forget(self) -> None:
        """In a forked child: new admission ids, no parent's pending work."""
        self._new_prefix()
        self._pending = {}
        self._tasks = set()

    def __repr__(self) -> str:
        return f"<SharedStore {self.link!r} instances={self.instances}>"

    def limiter(self, clock: Callable[[], float]) -> SharedLimiter:
        """The gate's limiter for this store."""
        return SharedLimiter(self, clock=clock)

    # ---------------------------------------------------------------- taking

    async def atake(self, claims: Sequence[Claim]) -> SharedTicket | float:
        """Admit ``claims`` fleet-wide (or locally when Redis is away): a ticket, or
        the seconds until they might fit (``inf``: never)."""
        from llmkernel_redis.limits import WindowClaim
        from llmkernel_redis.link import Unavailable

        admission = f"{self._prefix}{next(self._ids)}"
        if self.link.up:
            try:
                taken = await self.windows.take(
                    admission,
                    [
                        WindowClaim(bucket=c.key, limit=c.limit, window=c.window, amount=c.amount)
                        for c in claims
                    ],
                )
            except Unavailable:
                pass
            else:
                if not taken.ok:
                    return taken.wait
                now = self.clock()
                for claim, used in zip(claims, taken.used, strict=False):
                    self._seen[claim.key] = (claim.limit, claim.window, float(used), now)
                if len(self._seen) > 4096:
                    self._seen.clear()
                return SharedTicket(id=admission, claims=tuple(claims))
        if self.fail_closed:
            raise RefusedError(
                "shared rate limits are unavailable (Redis: "
                f"{self.link.reason or 'degraded'}) and [redis] fail_closed = true",
                kind="rate_limit",
                retry_after=self.link.retry_interval,
            )
        return self._take_locally(admission, claims)

    def _take_locally(self, admission: str, claims: Sequence[Claim]) -> SharedTicket | float:
        n = self.instances
        scaled = [
            c if math.isinf(c.limit) or n == 1 else attrs.evolve(c, limit=c.limit / n)
            for c in claims
        ]
        now = self.clock()
        got = self.local.take(scaled, now)
        if not isinstance(got, Ticket):
            return got
        ticket = SharedTicket(
            id=admission, claims=tuple(claims), local=got, local_store=self.local, taken_at=now
        )
        self._pending[admission] = ticket
        self.admitted_locally += 1
        if len(self._pending) > 100_000:  # a long outage: keep the newest
            for key in list(self._pending)[:10_000]:
                del self._pending[key]
        return ticket

    async def absorb(self) -> None:
        """Hand what was admitted locally to Redis (the link calls this when Redis
        answers again), then start the local windows afresh."""
        pending, self._pending = self._pending, {}
        self.local = MemoryStore()
        now = self.clock()
        entries: list[tuple[str, str, float, float, float]] = []
        for ticket in pending.values():
            age = now - ticket.taken_at
            assert ticket.local is not None
            for key, slot in ticket.local.slots:
                window = next(c.window for c in ticket.claims if c.key == key)
                if age < window and not slot.gone and slot.amount > 0:
                    entries.append((ticket.id, key, age, window, slot.amount))
            ticket.absorbed = True
        added = 0
        for start in range(0, len(entries), 200):
            added += await self.windows.absorb(entries[start : start + 200])
        if entries:
            log.info(
                "llmkernel.ratelimit.absorbed",
                admissions=len(pending),
                entries=len(entries),
                added=added,
            )

    # ---------------------------------------------------------------- LimitStore

    def take(self, claims: Sequence[Claim], now: float) -> Ticket | float:
        """Only the local part (the interface's sync take): see :meth:`atake`."""
        return self._take_locally(f"{self._prefix}{next(self._ids)}", claims)

    def wait_for(self, claims: Sequence[Claim], now: float) -> float:
        return self.local.wait_for(claims, now)

    def correct(self, ticket: Ticket, amounts: Mapping[str, float]) -> None:
        if not isinstance(ticket, SharedTicket):
            self.local.correct(ticket, amounts)
            return
        if ticket.local is not None and ticket.local_store is not None:
            ticket.local_store.correct(ticket.local, amounts)
            if not ticket.absorbed:
                return  # absorbed later, with the corrected amounts
        windows = {c.key: c.window for c in ticket.claims}
        changes = [(key, windows[key], amount) for key, amount in amounts.items()]
        if changes:
            self._later(self.windows.correct(ticket.id, changes))

    def block(self, key: str, until: float, limit: float, window: float) -> None:
        self.local.block(key, until, limit, window)
        seconds = until - self.clock()
        if seconds > 0:
            self._later(self.windows.block(key, seconds, window))

    def observe(self, key: str, limit: float, remaining: float, reset: float, now: float) -> None:
        n = self.instances
        self.local.observe(key, limit / n, remaining / n, reset, now)
        self._later(self.windows.observe(key, limit, remaining, reset, 60.0))

    def states(self, now: float) -> dict[str, WindowState]:
        """As last seen by this instance (Redis's counts after its own takes), and
        the local windows while Redis is away."""
        out: dict[str, WindowState] = {}
        for key, (limit, window, used, at) in list(self._seen.items()):
            if now - at >= window:
                continue
            out[key] = WindowState(
                limit=limit,
                window=window,
                used=used,
                remaining=max(0.0, limit - used),
                reset=max(0.0, at + window - now),
            )
        out.update(self.local.states(now))
        return out

    # ---------------------------------------------------------------- background

    def _later(self, work: Any) -> None:
        """Run ``work`` (a Redis call) without making the caller wait; a failure is
        the link's to report (degraded), the count stays as reserved meanwhile."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            work.close()
            return
        task = loop.create_task(_quietly(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the corrections still being sent (at close)."""
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait(tasks, timeout=self.link.timeout * 4)


async def _quietly(work: Any) -> None:
    from llmkernel_redis.link import Unavailable

    with contextlib.suppress(Unavailable):
        await work


class SharedLimiter(Limiter):
    """The :class:`Limiter` of a :class:`SharedStore`: every take is a Redis call
    (so it is always made on the async path), the line per bucket stays in this
    process."""

    store: SharedStore

    def __init__(self, store: SharedStore, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(store, clock=clock)

    def try_take(self, claims: Sequence[Claim]) -> Ticket | float:
        return 0.0  # no answer without a Redis call: the gate awaits take()

    async def take(
        self,
        claims: Sequence[Claim],
        deadline: float,
        *,
        wait: bool,
        first: float | None = None,
    ) -> Ticket:
        keys = [c.key for c in claims]
        queues = self._queues
        if not (queues and any(queues.get(k) for k in keys)):
            got = await self.store.atake(claims)
            if isinstance(got, Ticket):
                return got
            now = self.clock()
            if not wait or math.isinf(got) or now + got > deadline:
                raise NoRoom(got, keys)
        waiter = _Waiter(claims=claims, loop=asyncio.get_running_loop(), event=asyncio.Event())
        with self._lock:
            for key in keys:
                queues.setdefault(key, deque()).append(waiter)
        try:
            while True:
                with self._lock:
                    at_head = self._at_head(waiter)
                delay: float | None = None
                if at_head:
                    got = await self.store.atake(claims)
                    if isinstance(got, Ticket):
                        return got
                    delay = got
                now = self.clock()
                remaining = deadline - now
                if delay is not None and (math.isinf(delay) or now + delay > deadline):
                    raise NoRoom(delay, keys)
                if remaining <= 0:
                    raise NoRoom(delay if delay is not None else 0.0, keys)
                timeout = min(remaining, POLL if delay is None else min(delay, POLL))
                waiter.event.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await waiter.event.wait()
        finally:
            with self._lock:
                self._leave(waiter)


def shared_store(kernel: Any) -> SharedStore | None:
    """The fleet-wide store of ``kernel`` (``[redis]`` set, ``[plugin.ratelimit]
    shared`` not false), else ``None``."""
    from llmkernel_redis.shared import shared_for

    shared: Shared | None = shared_for(kernel, "ratelimit")
    if shared is None:
        return None
    store = SharedStore(
        shared.windows(), instances=shared.instances, fail_closed=shared.fail_closed
    )
    kernel.lifecycle.add_closer(store.drain)
    kernel.lifecycle.on_fork(store.forget)
    return store
