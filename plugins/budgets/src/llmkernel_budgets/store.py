"""Budget state in the ledger's SQLite file: spend counters, reservations, alerts.

Correct by construction:

- ``reserve`` checks and reserves a call's worst-case cost against every limit that
  applies in one ``BEGIN IMMEDIATE`` transaction, so concurrent callers (threads or
  processes) are serialized: the sum of spend and live reservations never exceeds
  a limit.
- ``settle`` turns a reservation into the actual cost (held until the ledger row
  arrives) or drops it when the attempt cost nothing.
- The spend counters are updated only by a ledger listener, inside the transaction
  that inserts the call's row, which also removes the call's reservations. So the
  ledger's settled costs and the budgets' spend are always equal, for every period.
- Reservations of a crashed process expire after ``reservation_ttl`` seconds: sums
  ignore them from then on, and a reservation deletes them at most once a minute.
- Slabs (``slab`` > 0): ``reserve_slow`` leases, in one such transaction, a row of
  ``slab`` worst cases per counter owned by this store, checked like a reservation,
  so other processes count it. ``take`` hands worst cases out of it in memory under
  a lock; ``release`` gives the worst case back and holds the actual cost until the
  ledger listener, in the transaction that adds it to the spend, takes it out of
  the slab's row. Under two slabs from a limit, the slab shrinks to what is in
  flight and the call reserves exactly. A slab row has its own ``expires``
  (``slab_ttl``), renewed by a thread while in use; idle slabs are given back.
- Alerts are recorded in a table with ``(counter, threshold)`` as the primary key:
  once per threshold per period, whichever process crosses it.
- An overrun (a call billed more than its reservation, an upstream that ignored
  ``max_tokens``): the whole cost is billed (never capped), logged
  (``llmkernel.budgets.overrun``) and counted (``overruns``). Its excess counts
  against the call's slabs until its row is committed, and those slabs stop
  handing out from memory: the next calls are checked in a transaction against the
  spend, so the limit refuses until the spend is back under it.
- SQLite errors about the file surface as
  :class:`~llmkernel_ledger.errors.LedgerError` naming it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import attrs

from llmkernel import log
from llmkernel.errors import BudgetExceededError
from llmkernel_budgets.limits import Limit, Scope, period_key, seconds_to_next_period
from llmkernel_ledger.errors import sqlite_errors

if TYPE_CHECKING:
    from llmkernel_ledger.store import LedgerRow, LedgerStore

__all__ = ["MIGRATIONS", "PURGE_EVERY", "Alert", "BudgetStore", "Hold"]

#: seconds between two deletions of expired reservations by one store
PURGE_EVERY = 60.0

MIGRATIONS = (
    (
        1000,
        (
            "CREATE TABLE IF NOT EXISTS budget_spend "
            "(counter TEXT PRIMARY KEY, spent TEXT NOT NULL)",
            """
            CREATE TABLE IF NOT EXISTS budget_reservations (
                id INTEGER PRIMARY KEY,
                reservation TEXT NOT NULL,
                request_id TEXT NOT NULL,
                counter TEXT NOT NULL,
                amount TEXT NOT NULL,
                created REAL NOT NULL,
                settled INTEGER NOT NULL DEFAULT 0
            )
            """,
            "CREATE INDEX IF NOT EXISTS budget_res_counter ON budget_reservations (counter)",
            "CREATE INDEX IF NOT EXISTS budget_res_request ON budget_reservations (request_id)",
            "CREATE INDEX IF NOT EXISTS budget_res_id ON budget_reservations (reservation)",
            "CREATE INDEX IF NOT EXISTS budget_res_created ON budget_reservations (created)",
            "CREATE TABLE IF NOT EXISTS budget_alerts (counter TEXT NOT NULL, "
            "threshold TEXT NOT NULL, spent TEXT NOT NULL, sent_at REAL NOT NULL, "
            "PRIMARY KEY (counter, threshold))",
        ),
    ),
    # slabs: a reservation row with its own expiry (NULL: created + reservation_ttl)
    (1001, ("ALTER TABLE budget_reservations ADD COLUMN expires REAL",)),
    # the ledger's id in a shared Redis (fleet budgets: what each ledger accounts for)
    (
        1002,
        ("CREATE TABLE IF NOT EXISTS budget_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",),
    ),
)


@attrs.frozen(kw_only=True)
class Alert:
    """A threshold crossed: ``limit`` (its name), ``counter`` (limit, scope values
    and period), ``period``, ``threshold`` (0.8 for 80%), ``spent`` and ``amount``."""

    limit: str
    counter: str
    period: str
    threshold: Decimal
    spent: Decimal
    amount: Decimal

    def as_dict(self) -> dict[str, str]:
        return {
            "limit": self.limit,
            "counter": self.counter,
            "period": self.period,
            "threshold": format(self.threshold, "f"),
            "spent": format(self.spent, "f"),
            "amount": format(self.amount, "f"),
        }


def _sum(
    conn: sqlite3.Connection,
    counter: str,
    since: float | None = None,
    now: float | None = None,
    *,
    exclude: str | None = None,
) -> Decimal:
    """Live reservations of ``counter``: per-call ones created at or after ``since``
    (older ones are expired, whether or not a purge has deleted them yet) and slabs
    whose ``expires`` is after ``now``; ``exclude`` leaves out one reservation id (a
    store's own slab)."""
    sql = "SELECT decimal_sum(amount) FROM budget_reservations WHERE counter = ?"
    params: list[object] = [counter]
    if since is not None:
        sql += " AND (CASE WHEN expires IS NULL THEN created >= ? ELSE expires > ? END)"
        params += [since, since if now is None else now]
    if exclude is not None:
        sql += " AND reservation != ?"
        params.append(exclude)
    value = conn.execute(sql, params).fetchone()[0]
    return Decimal(value) if value is not None else Decimal(0)


def _spent(conn: sqlite3.Connection, counter: str) -> Decimal:
    found = conn.execute("SELECT spent FROM budget_spend WHERE counter = ?", (counter,)).fetchone()
    return Decimal(found[0]) if found else Decimal(0)


_ZERO = Decimal(0)


class _Slab:
    """This store's lease on one counter, held in memory. ``granted`` is the
    amount of its row in the database; of it, ``held`` covers calls in flight (their
    worst cases) and ``pending`` the actual costs of finished calls whose ledger rows
    are not committed yet (the transaction that commits a row moves its cost from
    the slab to the spend); the rest is free to hand out."""

    __slots__ = (
        "blocked",
        "counter",
        "epoch",
        "excess",
        "granted",
        "held",
        "limit",
        "pending",
        "renewed",
        "used",
        "valid_until",
    )

    def __init__(self, limit: Limit, counter: str) -> None:
        self.limit = limit
        self.counter = counter
        self.granted = _ZERO
        self.held = _ZERO
        self.pending = _ZERO
        #: what finished calls were billed beyond their worst cases (overruns), until
        #: their rows are committed: in no row of the database yet
        self.excess = _ZERO
        #: an overrun since the last lease: hand nothing out from memory until a
        #: transaction has checked the spend again
        self.blocked = False
        #: overruns so far: a lease lifts the block only if none came meanwhile
        self.epoch = 0
        #: handed out from memory only before this (wall clock), well before expiry
        self.valid_until = float("-inf")
        self.renewed = float("-inf")
        #: taken from since the renewer last looked
        self.used = False

    @property
    def free(self) -> Decimal:
        return self.granted - self.held - self.pending - self.excess


@attrs.frozen(kw_only=True)
class Hold:
    """One attempt's reservation: ``worst`` taken from ``slabs`` in memory, and/or a
    per-call ``reservation`` row (``None`` when every limit had a slab)."""

    worst: Decimal
    slabs: tuple[_Slab, ...] = ()
    reservation: str | None = None


class BudgetStore:
    def __init__(
        self,
        ledger: LedgerStore,
        limits: Sequence[Limit],
        *,
        timezone: str = "UTC",
        reservation_ttl: float = 900.0,
        thresholds: Sequence[Decimal] = (Decimal("0.5"), Decimal("0.8"), Decimal("1")),
        allow_unpriced: bool = False,
        on_alert: Callable[[Alert], None] | None = None,
        slab: int = 0,
        slab_ttl: float = 60.0,
    ) -> None:
        self.ledger = ledger
        self.limits = tuple(limits)
        self.tz = ZoneInfo(timezone)
        self.reservation_ttl = reservation_ttl
        self.thresholds = tuple(sorted(thresholds))
        self.allow_unpriced = allow_unpriced
        self.on_alert = on_alert
        #: a slab is this many worst cases (0: every call reserves in SQLite)
        self.slab = slab
        self.slab_ttl = slab_ttl
        #: limits are checked at amount / divisor (a fleet's budgets while Redis is
        #: away: each of N instances spends at most its share)
        self.divisor = 1
        ledger.add_migrations(MIGRATIONS)
        ledger.add_listener(self._on_rows)
        # expired reservations are ignored by every sum at once, and deleted at most
        # once per PURGE_EVERY seconds (not in every reservation's transaction)
        self._purged = float("-inf")
        # slabs: one lock for the memory side (taken briefly, never around SQLite)
        self._lock = threading.Lock()
        self._slabs: dict[str, _Slab] = {}
        #: finished calls whose rows are not committed: (slab, share held, excess)
        self._pending: dict[str, list[tuple[_Slab, Decimal, Decimal]]] = {}
        #: calls billed more than their reservation, and by how much in all
        self.overruns = 0
        self.overrun_excess = _ZERO
        self._counters: dict[
            tuple[str | None, ...], tuple[float, float, Scope, tuple[tuple[Limit, str], ...]]
        ] = {}
        self._alerted: set[tuple[str, Decimal]] = set()
        self._renewer: threading.Thread | None = None
        self._stop = threading.Event()
        self._new_owner()

    def _new_owner(self) -> None:
        self.owner = f"slab:{os.getpid()}:{uuid.uuid4().hex[:12]}"

    def amount_of(self, limit: Limit) -> Decimal:
        """What ``limit`` allows here: its amount, or its share (``divisor``)."""
        return limit.amount if self.divisor == 1 else limit.amount / self.divisor

    def applicable(self, scope: Scope) -> list[Limit]:
        return [limit for limit in self.limits if limit.applies(scope)]

    def counters(self, scope: Scope, now: float) -> tuple[tuple[Limit, str], ...]:
        """The applicable limits with their counters at ``now``."""
        return self.counters_of((scope.provider, scope.model, scope.tenant, scope.key), now)[1]

    def counters_of(
        self, key: tuple[str | None, str | None, str | None, str | None], now: float
    ) -> tuple[Scope, tuple[tuple[Limit, str], ...]]:
        """The scope of ``(provider, model, tenant, key)`` and its applicable limits
        with their counters at ``now``, memoized until the first of their periods
        ends."""
        found = self._counters.get(key)
        if found is not None and found[0] <= now < found[1]:
            return found[2], found[3]
        provider, model, tenant, label = key
        scope = Scope(provider=provider, model=model, tenant=tenant, key=label)
        pairs = tuple(
            (limit, limit.counter(scope, now, self.tz)) for limit in self.applicable(scope)
        )
        until = min(
            (
                now + left
                for limit, _ in pairs
                if (left := seconds_to_next_period(limit.period, now, self.tz)) is not None
            ),
            default=float("inf"),
        )
        if len(self._counters) > 10_000:
            self._counters.clear()
        self._counters[key] = (now, until, scope, pairs)
        return scope, pairs

    # ---------------------------------------------------------------- exact reserve

    def reserve(
        self,
        reservation: str,
        request_id: str,
        scope: Scope,
        worst: Decimal | None,
        *,
        now: float | None = None,
    ) -> bool:
        """Reserve ``worst`` against every applicable limit, atomically, or raise
        :class:`~llmkernel.errors.BudgetExceededError` naming the first limit it
        would overspend. Returns whether anything was reserved. (One transaction:
        the exact way, used near a limit and when slabs are off.)"""
        now = time.time() if now is None else now
        limits = self.applicable(scope)
        if not limits:
            return False
        if worst is None:
            self._check_unpriced(scope, limits)
            return False
        pairs = [(limit, limit.counter(scope, now, self.tz)) for limit in limits]
        with (
            self._errors("reserve a budget"),
            self.ledger.lock,
            self.ledger.transaction() as conn,
        ):
            self._maybe_purge(conn, now)
            for limit, counter in pairs:
                self._check(conn, limit, counter, scope, worst, now)
            self._insert(conn, reservation, request_id, [c for _, c in pairs], worst, now)
        return True

    def _check_unpriced(self, scope: Scope, limits: Sequence[Limit]) -> None:
        if self.allow_unpriced:
            return
        first = limits[0]
        raise BudgetExceededError(
            f"{scope.provider}/{scope.model} is unpriced and budget {first.name!r} "
            "applies: set allow_unpriced = true or add its price under [prices]",
            limit=first.name,
            amount=first.amount,
            period=first.period,
            provider=scope.provider or "",
            model=scope.model or "",
        )

    def _maybe_purge(self, conn: sqlite3.Connection, now: float) -> None:
        if abs(now - self._purged) >= PURGE_EVERY:
            conn.execute(
                "DELETE FROM budget_reservations WHERE "
                "(CASE WHEN expires IS NULL THEN created < ? ELSE expires <= ? END)",
                (now - self.reservation_ttl, now),
            )
            self._purged = now

    def _check(
        self,
        conn: sqlite3.Connection,
        limit: Limit,
        counter: str,
        scope: Scope,
        worst: Decimal,
        now: float,
        *,
        exclude: str | None = None,
        mine: Decimal = _ZERO,
    ) -> tuple[Decimal, Decimal]:
        """Raise unless ``worst`` fits; returns (spent, others' live reservations)."""
        spent = _spent(conn, counter)
        others = _sum(conn, counter, now - self.reservation_ttl, now, exclude=exclude)
        reserved = others + mine
        if spent + reserved + worst > self.amount_of(limit):
            share = ""
            if self.divisor > 1:
                share = f" (this instance's 1/{self.divisor}: Redis is away)"
            raise BudgetExceededError(
                f"budget {limit.name!r} ({limit.period}) would be exceeded: "
                f"spent {spent}, reserved {reserved}, this call up to {worst}, "
                f"limit {self.amount_of(limit)}{share}",
                limit=limit.name,
                spent=spent,
                amount=limit.amount,
                period=counter.rsplit("|", 1)[-1],
                retry_after=seconds_to_next_period(limit.period, now, self.tz),
                provider=scope.provider or "",
                model=scope.model or "",
            )
        return spent, others

    @staticmethod
    def _insert(
        conn: sqlite3.Connection,
        reservation: str,
        request_id: str,
        counters: Sequence[str],
        worst: Decimal,
        now: float,
    ) -> None:
        conn.executemany(
            "INSERT INTO budget_reservations "
            "(reservation, request_id, counter, amount, created) VALUES (?, ?, ?, ?, ?)",
            [(reservation, request_id, c, format(worst, "f"), now) for c in counters],
        )

    def settle(self, reservation: str, cost: Decimal | None) -> None:
        """Hold the actual ``cost`` until the ledger records the call; drop the
        reservation when the attempt cost nothing (or is unpriced)."""
        with (
            self._errors("settle a budget"),
            self.ledger.lock,
            self.ledger.transaction() as conn,
        ):
            self.settle_in(conn, reservation, cost)

    def settle_in(self, conn: sqlite3.Connection, reservation: str, cost: Decimal | None) -> None:
        """:meth:`settle` inside the caller's transaction (the ledger writer's batch,
        so a settlement and the call's row share one commit)."""
        if cost is None or cost <= 0:
            conn.execute("DELETE FROM budget_reservations WHERE reservation = ?", (reservation,))
        else:
            conn.execute(
                "UPDATE budget_reservations SET amount = ?, settled = 1 WHERE reservation = ?",
                (format(cost, "f"), reservation),
            )

    # ---------------------------------------------------------------- slabs

    def take(self, pairs: Sequence[tuple[Limit, str]], worst: Decimal, now: float) -> Hold | None:
        """``worst`` from this store's slabs of every counter, in memory (no thread,
        no SQLite), or ``None`` when one of them lacks it (or is due for renewal)."""
        slabs = self._slabs
        with self._lock:
            found = []
            for _, counter in pairs:
                slab = slabs.get(counter)
                if slab is None or now >= slab.valid_until or slab.free < worst:
                    return None
                found.append(slab)
            for slab in found:
                slab.held += worst
                slab.used = True
        return Hold(worst=worst, slabs=tuple(found))

    def reserve_slow(
        self,
        reservation: str,
        request_id: str,
        scope: Scope,
        pairs: Sequence[tuple[Limit, str]],
        worst: Decimal,
        *,
        now: float | None = None,
    ) -> Hold:
        """The way when :meth:`take` fails (run it in a thread): in ONE transaction,
        lease (or renew, or grow) a slab of each counter far enough from its limit,
        return the unused part of those near it and reserve this call exactly there,
        or raise :class:`~llmkernel.errors.BudgetExceededError`."""
        now = time.time() if now is None else now
        with self._errors("reserve a budget"), self.ledger.lock:
            # another thread may have refilled while this one waited for the lock
            hold = self.take(pairs, worst, now)
            if hold is not None:
                return hold
            frozen: list[tuple[_Slab, Decimal, Decimal]] = []
            epochs: dict[_Slab, int] = {}
            leased: list[tuple[_Slab, Decimal, bool]] = []
            ready: list[_Slab] = []  # slabs that have it: taken in memory, not rewritten
            exact: list[str] = []
            try:
                with self.ledger.transaction() as conn:
                    self._maybe_purge(conn, now)
                    for limit, counter in pairs:
                        if self._take_one(counter, worst, now):
                            ready.append(self._slabs[counter])
                            continue
                        slab, held, pending = self._freeze(limit, counter, frozen, epochs=epochs)
                        need = held + pending
                        # overruns not committed yet count too (they are in no row)
                        excess = slab.excess
                        spent, others = self._check(
                            conn,
                            limit,
                            counter,
                            scope,
                            worst,
                            now,
                            exclude=self.owner,
                            mine=need + excess,
                        )
                        room = self.amount_of(limit) - spent - others - need - excess
                        size = worst * self.slab
                        if self.slab > 0 and excess == 0 and room >= 2 * size:
                            granted = need + worst + size
                            leased.append((slab, granted, True))
                        else:  # near the limit: give the free part back, reserve exactly
                            granted = need
                            leased.append((slab, granted, False))
                            exact.append(counter)
                        if granted > 0 or slab.granted > 0:
                            self._write_slab(conn, counter, granted, now)
                    if exact:
                        self._insert(conn, reservation, request_id, exact, worst, now)
            except BaseException:
                self._thaw(frozen)
                with self._lock:
                    for slab in ready:
                        slab.held -= worst
                raise
            taken = list(ready)
            with self._lock:
                for slab, granted, has_slab in leased:
                    slab.granted = granted
                    slab.renewed = now
                    if slab.epoch == epochs[slab]:  # the spend was checked after its overruns
                        slab.blocked = False
                    # (an empty slab serves free calls; after an overrun: none)
                    if (granted > 0 or has_slab) and not slab.blocked:
                        slab.valid_until = now + self.slab_ttl * 0.75
                    if has_slab:
                        slab.held += worst
                        slab.used = True
                        taken.append(slab)
        if len(taken) > len(ready):  # a slab was leased: keep it alive while in use
            self._start_renewer()
        return Hold(worst=worst, slabs=tuple(taken), reservation=reservation if exact else None)

    def _take_one(self, counter: str, worst: Decimal, now: float) -> bool:
        with self._lock:
            slab = self._slabs.get(counter)
            if slab is None or now >= slab.valid_until or slab.free < worst:
                return False
            slab.held += worst
            slab.used = True
            return True

    def _freeze(
        self,
        limit: Limit,
        counter: str,
        frozen: list[tuple[_Slab, Decimal, Decimal]],
        *,
        epochs: dict[_Slab, int] | None = None,
    ) -> tuple[_Slab, Decimal, Decimal]:
        """Stop handing out ``counter``'s slab while it is re-leased (its free part is
        recomputed in the transaction): its (slab, held, pending) now,
        also appended to ``frozen`` (restored by :meth:`_thaw` on failure).
        ``epochs`` gets the slab's overrun count now (a lease that succeeds lifts an
        overrun's block only if no other came meanwhile)."""
        with self._lock:
            slab = self._slabs.get(counter)
            if slab is None:
                slab = self._slabs[counter] = _Slab(limit, counter)
            state = (slab, slab.held, slab.pending)
            if epochs is not None:
                epochs[slab] = slab.epoch
            slab.valid_until = float("-inf")  # take() refuses it meanwhile
        frozen.append(state)
        return state

    def _thaw(self, frozen: Sequence[tuple[_Slab, Decimal, Decimal]]) -> None:
        with self._lock:
            for slab, *_ in frozen:
                if slab.granted > 0 and not slab.blocked:
                    slab.valid_until = slab.renewed + self.slab_ttl * 0.75

    def _write_slab(
        self, conn: sqlite3.Connection, counter: str, granted: Decimal, now: float
    ) -> None:
        conn.execute(
            "DELETE FROM budget_reservations WHERE reservation = ? AND counter = ?",
            (self.owner, counter),
        )
        if granted > 0:
            conn.execute(
                "INSERT INTO budget_reservations "
                "(reservation, request_id, counter, amount, created, expires) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (self.owner, self.owner, counter, format(granted, "f"), now, now + self.slab_ttl),
            )

    def release(
        self, hold: Hold, request_id: str, cost: Decimal | None, *, scope: Scope | None = None
    ) -> None:
        """The attempt is over: its worst case goes back to the slabs, its actual
        ``cost`` stays held there until the ledger commits the call's row. Of a cost
        over the worst case (an overrun) the slab holds the worst case (taking more
        out of its row would uncover the calls still in flight); the excess counts
        against the slab in memory until the row is committed, and the slab stops
        handing out from memory (see :meth:`overrun`)."""
        worst = hold.worst
        excess = cost - worst if cost is not None and cost > worst else _ZERO
        if excess > 0:
            self.overrun(hold, request_id, cost or _ZERO, scope)
        if not hold.slabs:
            return
        share = min(cost, worst) if cost is not None and cost > 0 else _ZERO
        with self._lock:
            for slab in hold.slabs:
                slab.held -= worst
                slab.pending += share
                if excess > 0:
                    slab.excess += excess
                    slab.epoch += 1
                    slab.blocked = True  # next calls: checked in SQLite first
                    slab.valid_until = float("-inf")
            if share > 0 or excess > 0:
                self._pending.setdefault(request_id, []).extend(
                    (s, share, excess) for s in hold.slabs
                )

    def overrun(
        self, hold: Hold, request_id: str, cost: Decimal, scope: Scope | None = None
    ) -> None:
        """A call billed ``cost``, more than the worst case it reserved: billed in
        full all the same, logged and counted (``overruns``, in ``kernel.stats()``)."""
        excess = cost - hold.worst
        with self._lock:
            self.overruns += 1
            self.overrun_excess += excess
        log.warning(
            "llmkernel.budgets.overrun",
            request_id=request_id,
            provider=None if scope is None else scope.provider,
            model=None if scope is None else scope.model,
            reserved=format(hold.worst, "f"),
            billed=format(cost, "f"),
            excess=format(excess, "f"),
            counters=[slab.counter for slab in hold.slabs] or None,
        )

    def _committed(
        self,
        costs: Sequence[tuple[str, list[tuple[_Slab, Decimal, Decimal]]]],
        moved: dict[_Slab, Decimal],
    ) -> None:
        """After the ledger's commit: those calls' costs are in the spend now, and
        ``moved`` out of the slabs' rows."""
        with self._lock:
            for request_id, entries in costs:
                for slab, cost, excess in entries:
                    slab.pending -= cost
                    slab.excess -= excess
                self._pending.pop(request_id, None)
            for slab, amount in moved.items():
                slab.granted -= amount

    def renew(self, *, now: float | None = None) -> None:
        """Extend the slabs in use (one transaction) and return the idle ones: a slab
        nobody took from since the last renewal, with nothing in flight or pending."""
        with self._lock:
            busy: list[_Slab] = []
            idle: list[_Slab] = []
            for slab in self._slabs.values():
                quiet = not slab.used and slab.held + slab.pending + slab.excess == 0
                (idle if quiet else busy).append(slab)
                slab.used = False
        self._rewrite(busy, idle, time.time() if now is None else now)

    def return_slabs(self) -> None:
        """Give the unused part of every slab back and stop renewing (at close): what
        is still in flight or not yet in the ledger stays reserved."""
        self._stop.set()
        self.give_back()

    def give_back(self) -> None:
        """Give the unused part of every slab back (they are leased again when
        needed)."""
        with self._lock:
            slabs = list(self._slabs.values())
        with self._errors("give budget slabs back"):
            self._rewrite([], slabs, time.time())

    def _rewrite(self, busy: Sequence[_Slab], shrink: Sequence[_Slab], now: float) -> None:
        """One transaction: ``busy`` slabs live ``slab_ttl`` longer, ``shrink`` ones
        keep only what covers their calls in flight and pending costs."""
        if not busy and not shrink:
            return
        with self.ledger.lock:
            frozen: list[tuple[_Slab, Decimal, Decimal]] = []
            try:
                with self.ledger.transaction() as conn:
                    for slab in busy:
                        conn.execute(
                            "UPDATE budget_reservations SET expires = ?, created = ? "
                            "WHERE reservation = ? AND counter = ?",
                            (now + self.slab_ttl, now, self.owner, slab.counter),
                        )
                    for slab in shrink:
                        _, held, pending = self._freeze(slab.limit, slab.counter, frozen)
                        self._write_slab(conn, slab.counter, held + pending, now)
            except BaseException:
                self._thaw(frozen)
                raise
            with self._lock:
                for slab in busy:
                    slab.renewed = now
                    if slab.valid_until > float("-inf"):
                        slab.valid_until = now + self.slab_ttl * 0.75
                for slab, held, pending in frozen:
                    slab.granted = held + pending
                    slab.renewed = now
                    if slab.granted > 0 and not slab.blocked:
                        slab.valid_until = now + self.slab_ttl * 0.75
                    elif slab.held + slab.pending <= 0 and self._slabs.get(slab.counter) is slab:
                        del self._slabs[slab.counter]

    def _start_renewer(self) -> None:
        if self._renewer is not None or self._stop.is_set():
            return
        with self._lock:
            if self._renewer is not None:
                return
            thread = threading.Thread(
                target=_renew_loop,
                args=(weakref.ref(self), self._stop, self.slab_ttl / 4),
                name="llmkernel-budgets-slabs",
                daemon=True,
            )
            self._renewer = thread
        thread.start()

    def _errors(self, doing: str) -> Any:
        return sqlite_errors(self.ledger.path, doing)

    def after_fork(self) -> None:
        """In a forked child (``kernel.on_fork``): the parent's slabs are the parent's
        rows; the child leases its own."""
        self._lock = threading.Lock()
        self._slabs = {}
        self._pending = {}
        self._renewer = None
        self._stop = threading.Event()
        self._new_owner()

    # ---------------------------------------------------------------- reading

    def ledger_id(self) -> str:
        """This ledger's id (made once, kept in its file): a fleet's shared budgets
        account each ledger's part under it."""
        with self._errors("read the ledger's id"), self.ledger.lock:
            with self.ledger.transaction() as conn:
                conn.execute(
                    "INSERT OR IGNORE INTO budget_meta (name, value) VALUES ('ledger_id', ?)",
                    (uuid.uuid4().hex,),
                )
            found = self.ledger.conn.execute(
                "SELECT value FROM budget_meta WHERE name = 'ledger_id'"
            ).fetchone()
        return str(found[0])

    def current_periods(self, now: float | None = None) -> set[str]:
        """The keys of the periods ``now`` is in: ``total``, today's, this month's."""
        now = time.time() if now is None else now
        return {period_key(p, now, self.tz) for p in ("total", "day", "month")}

    def current_spend(self, now: float | None = None) -> dict[str, Decimal]:
        """The recorded spend of every counter of the current periods (``total``,
        today, this month), as this ledger knows it."""
        periods = self.current_periods(now)
        with self._errors("read the budgets"), self.ledger.lock:
            found = self.ledger.conn.execute("SELECT counter, spent FROM budget_spend").fetchall()
        return {
            str(counter): Decimal(spent)
            for counter, spent in found
            if str(counter).rsplit("|", 1)[-1] in periods
        }

    def spent(
        self, limit: Limit, scope: Scope | None = None, *, now: float | None = None
    ) -> Decimal:
        """The recorded spend of ``limit`` for ``scope`` in the period of ``now``."""
        now = time.time() if now is None else now
        counter = limit.counter(scope or Scope(), now, self.tz)
        with self._errors("read a budget"), self.ledger.lock:
            return _spent(self.ledger.conn, counter)

    def reserved(
        self, limit: Limit, scope: Scope | None = None, *, now: float | None = None
    ) -> Decimal:
        """Live reservations of ``limit`` for ``scope``: per-call ones and every
        process's slabs."""
        now = time.time() if now is None else now
        counter = limit.counter(scope or Scope(), now, self.tz)
        with self._errors("read a budget"), self.ledger.lock:
            return _sum(self.ledger.conn, counter, now - self.reservation_ttl, now)

    def _on_rows(
        self, conn: sqlite3.Connection, rows: Sequence[LedgerRow]
    ) -> Iterable[Callable[[], None]]:
        """Ledger listener: count each new row's cost and drop its reservations, in
        the ledger's transaction. A batch reads and writes each counter once."""
        alerts: list[tuple[str, Decimal, Alert | None]] = []
        totals: dict[str, Decimal] = {}
        conn.executemany(
            "DELETE FROM budget_reservations WHERE request_id = ?",
            [(row.request_id,) for row in rows],
        )
        # calls of this store's slabs: the row's cost leaves the slab as it enters
        # the spend, in this transaction
        mine: list[tuple[str, list[tuple[_Slab, Decimal, Decimal]]]] = []
        moved: dict[_Slab, Decimal] = {}
        if self._pending:
            with self._lock:
                for row in rows:
                    entries = self._pending.get(row.request_id)
                    if entries is not None:
                        mine.append((row.request_id, list(entries)))
                        charged = row.cost if row.cost is not None and row.cost > 0 else _ZERO
                        sums: dict[_Slab, Decimal] = {}
                        for slab, cost, _ in entries:
                            sums[slab] = sums.get(slab, _ZERO) + cost
                        for slab, cost in sums.items():
                            moved[slab] = moved.get(slab, _ZERO) + min(cost, charged)
            for slab, amount in moved.items():
                found = conn.execute(
                    "SELECT amount FROM budget_reservations WHERE reservation = ? AND counter = ?",
                    (self.owner, slab.counter),
                ).fetchone()
                if found is None:
                    continue
                left = Decimal(found[0]) - amount
                if left > 0:
                    conn.execute(
                        "UPDATE budget_reservations SET amount = ? "
                        "WHERE reservation = ? AND counter = ?",
                        (format(left, "f"), self.owner, slab.counter),
                    )
                else:
                    conn.execute(
                        "DELETE FROM budget_reservations WHERE reservation = ? AND counter = ?",
                        (self.owner, slab.counter),
                    )
        for row in rows:
            if row.cost is None or row.cost == 0:
                continue
            scope = Scope(provider=row.provider, model=row.model, tenant=row.tenant, key=row.key)
            for limit, counter in self.counters(scope, row.ts):
                before = totals.get(counter)
                if before is None:
                    before = _spent(conn, counter)
                after = totals[counter] = before + row.cost
                for threshold in self.thresholds:
                    if after < threshold * limit.amount:
                        break
                    if (counter, threshold) in self._alerted:
                        continue
                    cursor = conn.execute(
                        "INSERT OR IGNORE INTO budget_alerts "
                        "(counter, threshold, spent, sent_at) VALUES (?, ?, ?, ?)",
                        (counter, format(threshold, "f"), format(after, "f"), time.time()),
                    )
                    alert = None
                    if cursor.rowcount == 1:  # this process crossed it first
                        alert = Alert(
                            limit=limit.name,
                            counter=counter,
                            period=counter.rsplit("|", 1)[-1],
                            threshold=threshold,
                            spent=after,
                            amount=limit.amount,
                        )
                    alerts.append((counter, threshold, alert))
        if totals:
            conn.executemany(
                "INSERT INTO budget_spend (counter, spent) VALUES (?, ?) "
                "ON CONFLICT (counter) DO UPDATE SET spent = excluded.spent",
                [(counter, format(total, "f")) for counter, total in totals.items()],
            )
        after_commit: list[Callable[[], None]] = []
        if mine:
            after_commit.append(lambda: self._committed(mine, moved))
        if alerts:
            after_commit.append(lambda: self._alerts_committed(alerts))
        return after_commit

    def _alerts_committed(self, alerts: Sequence[tuple[str, Decimal, Alert | None]]) -> None:
        for counter, threshold, _ in alerts:
            self._alerted.add((counter, threshold))
        on_alert = self.on_alert
        if on_alert is None:
            return
        for _, _, alert in alerts:
            if alert is not None:
                on_alert(alert)


def _renew_loop(ref: weakref.ref[BudgetStore], stop: threading.Event, every: float) -> None:
    """Renews a store's slabs in use, returns its idle ones; ends with the store."""
    while not stop.wait(every):
        store = ref()
        if store is None:
            return
        try:
            store.renew()
        except Exception as exc:  # a locked or full database: try again next time
            log.error("llmkernel.budgets.renew_failed", error=f"{type(exc).__name__}: {exc}")
        del store
