"""The budget gate: reserve the worst case before an attempt, settle after.

With slabs (the default), ``acquire`` takes the worst case from this process's slab
of every applicable limit, in memory: no thread, no SQLite. Only when a slab is
short (or due for renewal, or the limit is near) does it go to a thread for one
``BEGIN IMMEDIATE`` transaction that leases a new slab or reserves this call exactly.
A refusal is a :class:`~llmkernel.errors.BudgetExceededError` (a ``RefusedError``),
so the kernel moves on to the next candidate or raises it when none is left.
``release`` gives the worst case back to the slab and holds the actual cost there
until the ledger commits the call's row (whose transaction counts the spend); an
exact reservation is settled on the ledger's writer thread, in the transaction of
the rows around it. What an attempt is billed is its outcome's cost, or, for an
ending with tokens but no cost (an error after a partial answer, a stream stopped
early), those tokens at the candidate's price: never a free reservation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from llmkernel_budgets.fleet import FleetHold
from llmkernel_budgets.limits import Scope
from llmkernel_budgets.store import Hold
from llmkernel_ledger.record import billed_cost, key_label

if TYPE_CHECKING:
    from llmkernel_budgets.fleet import FleetBudgets
    from llmkernel_budgets.store import BudgetStore
    from llmkernel_ledger.writer import LedgerWriter

__all__ = ["STATE_KEY", "BudgetGate"]

STATE_KEY = "llmkernel_budgets.reservation"
_EMPTY: dict[str, str] = {}
_T = TypeVar("_T")


class BudgetGate:
    def __init__(
        self, store: BudgetStore, writer: LedgerWriter, fleet: FleetBudgets | None = None
    ) -> None:
        self.store = store
        self.writer = writer
        #: the fleet's budgets in Redis (``[redis]``), the store then its fallback
        self.fleet = fleet

    async def acquire(self, ctx: Any, attempt: Any) -> None:
        store = self.store
        candidate = attempt.candidate
        metadata = getattr(ctx, "metadata", None) or _EMPTY
        tenant = metadata.get("tenant")
        key = metadata.get("key")
        now = time.time()
        scope, pairs = store.counters_of(
            (
                candidate.provider,
                candidate.model,
                None if tenant is None else str(tenant),
                key_label(key),
            ),
            now,
        )
        if not pairs:
            return
        worst = ctx.worst_case_cost(candidate)
        reservation = f"{ctx.id}:{attempt.index}"
        request_id = str(ctx.id)
        fleet = self.fleet
        if fleet is not None and worst is not None:
            future = asyncio.ensure_future(
                fleet.acquire(reservation, request_id, scope, pairs, worst)
            )
            try:
                attempt.state[STATE_KEY] = await asyncio.shield(future)
            except asyncio.CancelledError:  # what it reserves anyway goes back at once
                future.add_done_callback(lambda f: self._abandon_fleet(f, request_id))
                raise
            return
        if worst is None or store.slab <= 0:
            reserved = await self._in_thread(
                request_id,
                reservation,
                lambda: store.reserve(reservation, request_id, scope, worst),
            )
            if reserved and worst is not None:
                attempt.state[STATE_KEY] = Hold(worst=worst, reservation=reservation)
            return
        hold = store.take(pairs, worst, now)
        if hold is None:
            hold = await self._in_thread(
                request_id,
                reservation,
                lambda: store.reserve_slow(reservation, request_id, scope, pairs, worst, now=now),
            )
        attempt.state[STATE_KEY] = hold

    async def _in_thread(self, request_id: str, reservation: str, fn: Callable[[], _T]) -> _T:
        """``fn()`` in a thread. Cancelled meanwhile, the reservation it makes anyway
        is released at once (costing nothing), never left held."""
        future = asyncio.ensure_future(asyncio.to_thread(fn))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(lambda f: self._abandon(f, request_id, reservation))
            raise

    def _abandon(self, future: asyncio.Future[Any], request_id: str, reservation: str) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        held = future.result()
        if held is False:
            return
        if held is not True:
            self.store.release(held, request_id, None)
            if held.reservation is None:
                return
        store = self.store
        self.writer.submit_sql(lambda conn: store.settle_in(conn, reservation, None))

    def _abandon_fleet(self, future: asyncio.Future[FleetHold], request_id: str) -> None:
        if not future.cancelled() and future.exception() is None:
            self._release(future.result(), request_id, None, None)

    def release(self, ctx: Any, attempt: Any, outcome: Any) -> None:
        held: Hold | FleetHold | None = attempt.state.pop(STATE_KEY, None)
        if held is None:
            return
        candidate = attempt.candidate
        scope = Scope(provider=candidate.provider, model=candidate.model)
        self._release(held, str(ctx.id), billed_cost(ctx, outcome), scope)

    def _release(
        self, held: Hold | FleetHold, request_id: str, cost: Decimal | None, scope: Scope | None
    ) -> None:
        store = self.store
        if isinstance(held, FleetHold):
            assert self.fleet is not None
            local = held.local
            if local is not None:  # reserved in SQLite while Redis was away
                self._release(local, request_id, cost, scope)
            elif cost is not None and cost > held.worst:
                store.overrun(Hold(worst=held.worst), request_id, cost, scope)
            self.fleet.release(held, cost)
            return
        store.release(held, request_id, cost, scope=scope)
        reservation = held.reservation
        if reservation is None:
            return
        self.writer.submit_sql(lambda conn: store.settle_in(conn, reservation, cost))

    async def aclose(self) -> None:
        """Return the unused part of this process's slabs (after the ledger has
        committed what is queued, so pending costs are in the spend), in a thread."""
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        self.writer.flush()
        self.store.return_slabs()
