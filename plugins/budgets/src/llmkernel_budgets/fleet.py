"""Budgets of a whole fleet in Redis (``[redis]``, ``[plugin.budgets] shared``).

The counters live in Redis (``llmkernel_redis.budgets``: integer micro-dollars, the
``llmkernel.budgets`` script); each instance keeps its SQLite ledger as the record
of every call. The fast path stays in memory: an instance leases a slab of every
limit it uses from Redis (one script call, checked against the spend and every
instance's leases and reservations) and hands calls their worst case out of it
with no Redis call; near a limit the script reserves the call exactly instead.

- A finished attempt's cost is settled in Redis (``settle``, idempotent by the
  attempt's id) off the caller's path; until Redis has it, its share stays
  counted in the lease. A settlement Redis did not take is kept and sent again
  when Redis answers (sent twice, it counts once).
- Reseeding: Redis's counters are raised to what this ledger accounts for (the
  ledger's spend at start, plus every settlement Redis took since), at the first
  call, every ``slab_ttl / 4`` seconds and whenever Redis answers again after an
  outage: a restarted or emptied Redis never lowers the spend.
- Leases are renewed while in use and given back when idle or at close; a
  crashed instance's lease expires after ``slab_ttl``, an exact reservation after
  ``reservation_ttl``.
- Redis unreachable (its link degraded): calls reserve from the SQLite store at
  amount / ``[redis] instances`` (this ledger's spend against its share), logged
  once (``llmkernel.budgets.degraded``); with ``[redis] fail_closed = true`` they
  are refused with a :class:`~llmkernel.errors.RefusedError` of kind
  ``"unavailable"`` naming Redis (the gateway answers 503). What was spent
  meanwhile reaches Redis when it is back; the instance keeps reserving locally
  for ``slab_ttl / 4 + 2 * retry_interval`` more (``"recovering"``), while
  every other instance finds Redis back and reseeds its part. Calls reserved
  locally count in the leases too, so a lease set in Redis covers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Coroutine, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

import attrs

from llmkernel import log
from llmkernel.errors import BudgetExceededError, RefusedError
from llmkernel_budgets.limits import Limit, Scope, seconds_to_next_period

if TYPE_CHECKING:
    from llmkernel_budgets.store import BudgetStore, Hold
    from llmkernel_redis.budgets import SharedBudgets
    from llmkernel_redis.shared import Shared

__all__ = ["FleetBudgets", "FleetHold"]

_ZERO = Decimal(0)
_NEVER = float("-inf")
#: counters per script call (reseed, renew)
_CHUNK = 100
#: settlements kept while Redis is away before the oldest are folded into the reseed
_UNSENT = 100_000


class _Lease:
    """This instance's lease on one counter. ``granted`` is its amount in Redis as
    last set; of it ``held`` covers calls in flight (their worst cases), ``pending``
    the costs of finished calls Redis has not taken yet, ``consumed`` the costs it
    has taken (in its spend now, and still in the lease until the next lease or
    renewal sets its amount); the rest is free to hand out."""

    __slots__ = ("consumed", "counter", "granted", "held", "limit", "pending", "used", "valid")

    def __init__(self, limit: Limit, counter: str) -> None:
        self.limit = limit
        self.counter = counter
        self.granted = _ZERO
        self.held = _ZERO
        self.pending = _ZERO
        self.consumed = _ZERO
        self.valid = _NEVER  # handed out from memory only before this (monotonic)
        self.used = False

    @property
    def free(self) -> Decimal:
        return self.granted - self.held - self.pending - self.consumed


@attrs.define(kw_only=True, eq=False)
class FleetHold:
    """One attempt's reservation: ``worst`` against ``counters``, from this
    instance's ``leases`` (``None`` where Redis reserved it exactly under
    ``reservation``), or ``local``: from the SQLite store while Redis was away."""

    worst: Decimal
    counters: tuple[str, ...]
    reservation: str
    leases: tuple[_Lease | None, ...] = ()
    local: Hold | None = None


@attrs.frozen(kw_only=True)
class _Settlement:
    id: str
    costs: tuple[tuple[str, Decimal], ...]
    shares: tuple[tuple[_Lease, Decimal], ...]


class FleetBudgets:
    """The budget store of one instance of a fleet: Redis first, SQLite when away."""

    def __init__(self, store: BudgetStore, shared: Shared) -> None:
        self.store = store
        self.budgets: SharedBudgets = shared.budgets()
        self.link = self.budgets.link
        self.instances = shared.instances
        self.fail_closed = shared.fail_closed
        self._lock = threading.Lock()  # the memory side, taken briefly
        self._leasing: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        self._leases: dict[str, _Lease] = {}
        self._unsent: dict[str, _Settlement] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._renewer: asyncio.Task[None] | None = None
        #: this ledger's id, and per counter what it accounts for in Redis: its spend
        #: now (before any call of this instance), plus every settlement Redis took
        self.source = store.ledger_id()
        self._confirmed = store.current_spend()
        self._reseeded = False
        self.degraded = False
        #: after an outage, reserve locally until then (monotonic): every instance
        #: has reseeded Redis by then (its part may be missing in a restarted Redis)
        self._local_until = _NEVER
        self._closed = False
        self._new_owner()
        store.divisor = self.instances
        self.link.on_recover(self._recovered)

    def _new_owner(self) -> None:
        self.owner = f"{os.getpid():x}.{os.urandom(6).hex()}"

    def __repr__(self) -> str:
        return f"<FleetBudgets {self.link!r} instances={self.instances}>"

    # ---------------------------------------------------------------- acquire

    async def acquire(
        self,
        reservation: str,
        request_id: str,
        scope: Scope,
        pairs: Sequence[tuple[Limit, str]],
        worst: Decimal,
    ) -> FleetHold:
        """Reserve ``worst`` against every counter of ``pairs``: from the leases in
        memory, else through Redis, else (Redis away) from the SQLite store."""
        from llmkernel_redis.link import Unavailable

        hold = self._take(pairs, worst, reservation)
        if hold is not None:
            return hold
        self._start_renewer()  # also reseeds and brings Redis back when idle
        if self.link.up and time.monotonic() >= self._local_until:
            try:
                return await self._lease(reservation, scope, pairs, worst)
            except Unavailable:
                self._lost()
        return await self._locally(reservation, request_id, scope, pairs, worst)

    def _take(
        self, pairs: Sequence[tuple[Limit, str]], worst: Decimal, reservation: str
    ) -> FleetHold | None:
        now = time.monotonic()
        with self._lock:
            found = []
            for _, counter in pairs:
                lease = self._leases.get(counter)
                if lease is None or now >= lease.valid or lease.free < worst:
                    return None
                found.append(lease)
            for lease in found:
                lease.held += worst
                lease.used = True
        return FleetHold(
            worst=worst,
            counters=tuple(c for _, c in pairs),
            reservation=reservation,
            leases=tuple(found),
        )

    def _lease_of(self, limit: Limit, counter: str) -> _Lease:
        """This instance's lease on ``counter`` (made empty); hold ``_lock``."""
        lease = self._leases.get(counter)
        if lease is None:
            lease = self._leases[counter] = _Lease(limit, counter)
        return lease

    def _loop_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        found = self._leasing.get(loop)
        if found is None:
            if len(self._leasing) > 8:  # loops come and go (the sync API's portals)
                self._leasing = {k: v for k, v in self._leasing.items() if not k.is_closed()}
            found = self._leasing[loop] = asyncio.Lock()
        return found

    async def _lease(
        self,
        reservation: str,
        scope: Scope,
        pairs: Sequence[tuple[Limit, str]],
        worst: Decimal,
    ) -> FleetHold:
        from llmkernel_redis.budgets import Refused

        async with self._loop_lock():
            hold = self._take(pairs, worst, reservation)  # another call may have leased
            if hold is not None:
                return hold
            await self._ready()
            store = self.store
            with self._lock:
                leases = []
                for limit, counter in pairs:
                    lease = self._lease_of(limit, counter)
                    lease.valid = _NEVER  # no take() while its amount is being set
                    leases.append((lease, lease.held + lease.pending, lease.consumed))
            got = await self.budgets.lease(
                self.owner,
                reservation,
                [(lease.counter, lease.limit.amount, need) for lease, need, _ in leases],
                worst=worst,
                slab=worst * store.slab,
                lease_ttl=store.slab_ttl,
                reservation_ttl=store.reservation_ttl,
            )
            if isinstance(got, Refused):
                self._thaw(leases)
                limit = next(limit for limit, c in pairs if c == got.counter)
                raise BudgetExceededError(
                    f"budget {limit.name!r} ({limit.period}) would be exceeded: "
                    f"spent {got.spent}, reserved {got.reserved} (fleet-wide), "
                    f"this call up to {worst}, limit {limit.amount}",
                    limit=limit.name,
                    spent=got.spent,
                    amount=limit.amount,
                    period=got.counter.rsplit("|", 1)[-1],
                    retry_after=seconds_to_next_period(limit.period, time.time(), store.tz),
                    provider=scope.provider or "",
                    model=scope.model or "",
                )
            self._set(leases, list(got.granted))
            with self._lock:
                taken: list[_Lease | None] = []
                for (lease, _, _), exact in zip(leases, got.exact, strict=True):
                    if exact:
                        taken.append(None)
                    else:
                        lease.held += worst
                        lease.used = True
                        taken.append(lease)
        self._start_renewer()
        return FleetHold(
            worst=worst,
            counters=tuple(c for _, c in pairs),
            reservation=reservation,
            leases=tuple(taken),
        )

    def _set(
        self, leases: Sequence[tuple[_Lease, Decimal, Decimal]], amounts: Sequence[Decimal]
    ) -> None:
        """Redis set the leases' amounts (computed when ``consumed`` was as given)."""
        valid = time.monotonic() + self.store.slab_ttl * 0.75
        with self._lock:
            for (lease, _, consumed), amount in zip(leases, amounts, strict=True):
                lease.granted = amount
                lease.consumed -= consumed
                lease.valid = valid if amount > 0 and not self.degraded else _NEVER

    def _thaw(self, leases: Sequence[tuple[_Lease, Decimal, Decimal]]) -> None:
        """Nothing changed in Redis: hand out what the leases still hold."""
        valid = time.monotonic() + self.store.slab_ttl * 0.75
        with self._lock:
            for lease, _, _ in leases:
                if lease.granted > 0 and not self.degraded:
                    lease.valid = valid

    async def _locally(
        self,
        reservation: str,
        request_id: str,
        scope: Scope,
        pairs: Sequence[tuple[Limit, str]],
        worst: Decimal,
    ) -> FleetHold:
        if self.fail_closed:
            why = self.link.reason or "degraded"
            if self.link.state == "ok":  # back, and the fleet is reseeding it
                why = "back from an outage, the fleet is reseeding it"
            raise RefusedError(
                f"shared budgets are unavailable (Redis: {why}) and [redis] fail_closed = true",
                kind="unavailable",
                retry_after=self.link.retry_interval,
                provider=scope.provider or "",
                model=scope.model or "",
            )
        store = self.store
        now = time.time()
        local = store.take(pairs, worst, now)
        if local is None:
            local = await asyncio.to_thread(
                store.reserve_slow, reservation, request_id, scope, pairs, worst, now=now
            )
        # counted in the leases too: a lease set in Redis covers them until settled
        with self._lock:
            leases = []
            for limit, counter in pairs:
                lease = self._lease_of(limit, counter)
                lease.held += worst
                leases.append(lease)
        return FleetHold(
            worst=worst,
            counters=tuple(c for _, c in pairs),
            reservation=reservation,
            leases=tuple(leases),
            local=local,
        )

    # ---------------------------------------------------------------- release

    def release(self, hold: FleetHold, cost: Decimal | None) -> None:
        """The attempt is over: its worst case back to the leases, its ``cost`` (and
        the drop of an exact reservation) to Redis, off the caller's path."""
        billed = cost if cost is not None and cost > 0 else _ZERO
        share = min(billed, hold.worst)
        shares: list[tuple[_Lease, Decimal]] = []
        with self._lock:
            for lease in hold.leases:
                if lease is None:
                    continue
                lease.held -= hold.worst
                lease.pending += share
                if billed > hold.worst:  # an overrun: ask Redis before handing out more
                    lease.valid = _NEVER
                if share > 0:
                    shares.append((lease, share))
        if billed == 0 and None not in hold.leases:
            return  # nothing spent and nothing reserved in Redis by this call
        settlement = _Settlement(
            id=hold.reservation,
            costs=tuple((c, billed) for c in hold.counters),
            shares=tuple(shares),
        )
        with self._lock:
            self._unsent[settlement.id] = settlement
            if len(self._unsent) > _UNSENT:
                self._fold()
        self._later(self._send([settlement]))

    def _fold(self) -> None:
        """A long outage: the oldest unsent costs go into what this ledger accounts
        for (the next reseed adds them; their exact reservations expire)."""
        for key in list(self._unsent)[: _UNSENT // 10]:
            settlement = self._unsent.pop(key)
            for counter, cost in settlement.costs:
                self._confirmed[counter] = self._confirmed.get(counter, _ZERO) + cost
            for lease, share in settlement.shares:
                lease.pending -= share
                lease.consumed += share

    async def _send(self, settlements: Sequence[_Settlement]) -> bool:
        """Settle in Redis; one it did not take stays unsent (for the next try).
        Returns whether all were sent."""
        from llmkernel_redis.link import Unavailable

        for settlement in settlements:
            try:
                await self._ready()
                await self.budgets.settle(settlement.id, list(settlement.costs), source=self.source)
            except Unavailable:
                self._lost()
                return False
            self._settled(settlement)
        return True

    def _settled(self, settlement: _Settlement) -> None:
        with self._lock:
            if self._unsent.pop(settlement.id, None) is None:
                return  # settled by another try
            confirmed = self._confirmed
            for counter, cost in settlement.costs:
                confirmed[counter] = confirmed.get(counter, _ZERO) + cost
            for lease, share in settlement.shares:
                lease.pending -= share
                lease.consumed += share

    # ---------------------------------------------------------------- outages

    def _lost(self) -> None:
        """Redis did not answer: stop handing out leases (they may be gone)."""
        with self._lock:
            for lease in self._leases.values():
                lease.valid = _NEVER
            first = not self.degraded
            self.degraded = True
            self._reseeded = False  # reseed before the next call that counts on Redis
        if first:
            log.warning(
                "llmkernel.budgets.degraded",
                reason=self.link.reason,
                fallback="refuse" if self.fail_closed else f"1/{self.instances} of each budget",
            )

    async def resync(self) -> None:
        """The periodic check: raise Redis's counters to what this ledger accounts
        for (an emptied Redis), send what it did not take, renew the leases in use
        and give the idle ones back. Raises ``Unavailable`` when Redis is away."""
        await self._catch_up()
        async with self._loop_lock():  # no lease is being set meanwhile
            await self._renew()

    async def _recovered(self) -> None:
        """Redis answers again (the link's recovery listener): catch up; the leases
        are set again, checked, at their next use (Redis may have lost them)."""
        await self._catch_up()

    async def _catch_up(self) -> None:
        from llmkernel_redis.link import Unavailable

        await self.reseed()
        with self._lock:
            unsent = list(self._unsent.values())
        width = max(1, self.link.pool_size)  # sent side by side, one per connection
        for start in range(0, len(unsent), width):
            group = unsent[start : start + width]
            if not all(await asyncio.gather(*(self._send([one]) for one in group))):
                raise Unavailable(self.link.reason or "redis is degraded")
        with self._lock:
            was, self.degraded = self.degraded, False
            if was:
                grace = self.store.slab_ttl / 4 + 2 * self.link.retry_interval
                self._local_until = time.monotonic() + grace
        if was:
            log.info("llmkernel.budgets.recovered", resent=len(unsent))
            await asyncio.to_thread(self.store.give_back)  # the SQLite fallback's slabs

    async def _ready(self) -> None:
        """Before a call that counts on Redis's spend: reseed first when Redis may
        have lost it (never reseeded yet, or back from an outage: the reseed is
        then the call that finds it back, and the recovery catches up the rest)."""
        if not self._reseeded or self.link.state != "ok":
            await self.reseed()

    async def reseed(self) -> None:
        """Raise Redis's counters to what this ledger accounts for (never lowers)."""
        periods = self.store.current_periods()
        with self._lock:
            confirmed = self._confirmed
            for counter in [c for c in confirmed if c.rsplit("|", 1)[-1] not in periods]:
                del confirmed[counter]  # a day or month that is over
            totals = list(confirmed.items())
        for start in range(0, len(totals), _CHUNK):
            await self.budgets.reseed(totals[start : start + _CHUNK], source=self.source)
        self._reseeded = True

    # ---------------------------------------------------------------- renewal

    def _start_renewer(self) -> None:
        renewer = self._renewer
        if self._closed or (renewer is not None and not renewer.get_loop().is_closed()):
            return
        self._renewer = asyncio.get_running_loop().create_task(self._renew_loop())

    async def _renew_loop(self) -> None:
        from llmkernel_redis.link import Unavailable

        every = self.store.slab_ttl / 4
        while not self._closed:
            await asyncio.sleep(every)
            try:
                if self.link.up:
                    await self.resync()
            except Unavailable:
                self._lost()
            except Exception as exc:  # a bug or a locked ledger: try again next time
                log.error("llmkernel.budgets.renew_failed", error=f"{type(exc).__name__}: {exc}")

    async def _renew(self, *, give_back: bool = False) -> None:
        """Leases in use live ``slab_ttl`` longer (one Redis lost or let expire is
        set again, checked, at its next use); idle ones (all with ``give_back``)
        keep only what covers calls in flight and unsettled costs. Call it holding
        the leasing lock."""
        with self._lock:
            todo: list[tuple[_Lease, Decimal | None, Decimal, Decimal]] = []
            for lease in list(self._leases.values()):
                idle = give_back or (not lease.used and lease.held + lease.pending == 0)
                amount = None
                if idle:
                    lease.valid = _NEVER
                    amount = lease.held + lease.pending
                lease.used = False
                todo.append((lease, amount, lease.granted, lease.consumed))
        valid = time.monotonic() + self.store.slab_ttl * 0.75
        for start in range(0, len(todo), _CHUNK):
            part = todo[start : start + _CHUNK]
            got = await self.budgets.renew(
                self.owner,
                [(lease.counter, amount) for lease, amount, _, _ in part],
                lease_ttl=self.store.slab_ttl,
            )
            with self._lock:
                for (lease, amount, granted, consumed), now in zip(part, got, strict=True):
                    if amount is not None:  # set to what is in flight or unsettled
                        lease.granted = now
                        lease.consumed -= consumed
                        gone = now == 0 and lease.held + lease.pending == 0
                        if gone and self._leases.get(lease.counter) is lease:
                            del self._leases[lease.counter]
                    elif now < granted:  # lost (an emptied Redis) or expired
                        lease.granted = now
                        lease.consumed = _ZERO
                        lease.valid = _NEVER
                    elif lease.valid != _NEVER:
                        lease.valid = valid

    # ---------------------------------------------------------------- lifecycle

    def _later(self, coro: Coroutine[object, object, object]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            coro.close()  # sent again at the next resync
            return
        task = loop.create_task(_quietly(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the settlements being sent (those Redis does not take stay
        unsent)."""
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait(tasks, timeout=self.link.timeout * 4)

    async def aclose(self) -> None:
        """At close: wait for the settlements being sent, send the rest, give the
        leases back (Redis away: they expire)."""
        from llmkernel_redis.link import Unavailable

        self._closed = True
        renewer, self._renewer = self._renewer, None
        if renewer is not None and not renewer.done():
            renewer.get_loop().call_soon_threadsafe(renewer.cancel)
        await self.drain()
        with self._lock:
            unsent = list(self._unsent.values())
        with contextlib.suppress(Unavailable):
            await self._send(unsent)
            async with self._loop_lock():
                await self._renew(give_back=True)

    def forget(self) -> None:
        """In a forked child: the parent's leases and settlements are the parent's."""
        self._lock = threading.Lock()
        self._leasing = {}
        self._leases = {}
        self._unsent = {}
        self._tasks = set()
        self._renewer = None
        self._new_owner()

    def stats(self) -> dict[str, object]:
        with self._lock:
            state = "degraded" if self.degraded else "ok"
            if state == "ok" and time.monotonic() < self._local_until:
                state = "recovering"
            return {
                "shared": state,
                "leases": len(self._leases),
                "unsent": len(self._unsent),
            }


async def _quietly(work: Coroutine[object, object, object]) -> None:
    from llmkernel_redis.link import Unavailable

    with contextlib.suppress(Unavailable):
        await work
