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
- Alerts are recorded in a table with ``(counter, threshold)`` as the primary key:
  once per threshold per period, whichever process crosses it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import attrs

from llmkernel.errors import BudgetExceededError
from llmkernel_budgets.limits import Limit, Scope, seconds_to_next_period

if TYPE_CHECKING:
    from llmkernel_ledger.store import LedgerRow, LedgerStore

__all__ = ["MIGRATIONS", "PURGE_EVERY", "Alert", "BudgetStore"]

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


def _sum(conn: sqlite3.Connection, counter: str, since: float | None = None) -> Decimal:
    """Live reservations of ``counter``: those created at or after ``since`` (older
    ones are expired, whether or not a purge has deleted them yet)."""
    if since is None:
        value = conn.execute(
            "SELECT decimal_sum(amount) FROM budget_reservations WHERE counter = ?", (counter,)
        ).fetchone()[0]
    else:
        value = conn.execute(
            "SELECT decimal_sum(amount) FROM budget_reservations "
            "WHERE counter = ? AND created >= ?",
            (counter, since),
        ).fetchone()[0]
    return Decimal(value) if value is not None else Decimal(0)


def _spent(conn: sqlite3.Connection, counter: str) -> Decimal:
    found = conn.execute("SELECT spent FROM budget_spend WHERE counter = ?", (counter,)).fetchone()
    return Decimal(found[0]) if found else Decimal(0)


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
    ) -> None:
        self.ledger = ledger
        self.limits = tuple(limits)
        self.tz = ZoneInfo(timezone)
        self.reservation_ttl = reservation_ttl
        self.thresholds = tuple(sorted(thresholds))
        self.allow_unpriced = allow_unpriced
        self.on_alert = on_alert
        ledger.add_migrations(MIGRATIONS)
        ledger.add_listener(self._on_rows)
        # expired reservations are ignored by every sum at once, and deleted at most
        # once per PURGE_EVERY seconds (not in every reservation's transaction)
        self._purged = float("-inf")

    def applicable(self, scope: Scope) -> list[Limit]:
        return [limit for limit in self.limits if limit.applies(scope)]

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
        would overspend. Returns whether anything was reserved."""
        now = time.time() if now is None else now
        limits = self.applicable(scope)
        if not limits:
            return False
        if worst is None:
            if self.allow_unpriced:
                return False
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
        live_since = now - self.reservation_ttl
        with self.ledger.lock, self.ledger.transaction() as conn:
            if abs(now - self._purged) >= PURGE_EVERY:
                conn.execute("DELETE FROM budget_reservations WHERE created < ?", (live_since,))
                self._purged = now
            counters = []
            for limit in limits:
                counter = limit.counter(scope, now, self.tz)
                spent = _spent(conn, counter)
                reserved = _sum(conn, counter, live_since)
                if spent + reserved + worst > limit.amount:
                    raise BudgetExceededError(
                        f"budget {limit.name!r} ({limit.period}) would be exceeded: "
                        f"spent {spent}, reserved {reserved}, this call up to {worst}, "
                        f"limit {limit.amount}",
                        limit=limit.name,
                        spent=spent,
                        amount=limit.amount,
                        period=counter.rsplit("|", 1)[-1],
                        retry_after=seconds_to_next_period(limit.period, now, self.tz),
                        provider=scope.provider or "",
                        model=scope.model or "",
                    )
                counters.append(counter)
            conn.executemany(
                "INSERT INTO budget_reservations "
                "(reservation, request_id, counter, amount, created) VALUES (?, ?, ?, ?, ?)",
                [(reservation, request_id, c, format(worst, "f"), now) for c in counters],
            )
        return True

    def settle(self, reservation: str, cost: Decimal | None) -> None:
        """Hold the actual ``cost`` until the ledger records the call; drop the
        reservation when the attempt cost nothing (or is unpriced)."""
        with self.ledger.lock, self.ledger.transaction() as conn:
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

    def spent(
        self, limit: Limit, scope: Scope | None = None, *, now: float | None = None
    ) -> Decimal:
        """The recorded spend of ``limit`` for ``scope`` in the period of ``now``."""
        now = time.time() if now is None else now
        counter = limit.counter(scope or Scope(), now, self.tz)
        with self.ledger.lock:
            return _spent(self.ledger.conn, counter)

    def reserved(
        self, limit: Limit, scope: Scope | None = None, *, now: float | None = None
    ) -> Decimal:
        now = time.time() if now is None else now
        counter = limit.counter(scope or Scope(), now, self.tz)
        with self.ledger.lock:
            return _sum(self.ledger.conn, counter, now - self.reservation_ttl)

    def _on_rows(
        self, conn: sqlite3.Connection, rows: Sequence[LedgerRow]
    ) -> Iterable[Callable[[], None]]:
        """Ledger listener: count each new row's cost and drop its reservations, in
        the ledger's transaction."""
        alerts: list[Alert] = []
        for row in rows:
            conn.execute("DELETE FROM budget_reservations WHERE request_id = ?", (row.request_id,))
            if row.cost is None or row.cost == 0:
                continue
            scope = Scope(provider=row.provider, model=row.model, tenant=row.tenant, key=row.key)
            for limit in self.applicable(scope):
                counter = limit.counter(scope, row.ts, self.tz)
                before = _spent(conn, counter)
                after = before + row.cost
                conn.execute(
                    "INSERT INTO budget_spend (counter, spent) VALUES (?, ?) "
                    "ON CONFLICT (counter) DO UPDATE SET spent = excluded.spent",
                    (counter, format(after, "f")),
                )
                for threshold in self.thresholds:
                    if after >= threshold * limit.amount:
                        cursor = conn.execute(
                            "INSERT OR IGNORE INTO budget_alerts "
                            "(counter, threshold, spent, sent_at) VALUES (?, ?, ?, ?)",
                            (counter, format(threshold, "f"), format(after, "f"), time.time()),
                        )
                        if cursor.rowcount == 1:
                            alerts.append(
                                Alert(
                                    limit=limit.name,
                                    counter=counter,
                                    period=counter.rsplit("|", 1)[-1],
                                    threshold=threshold,
                                    spent=after,
                                    amount=limit.amount,
                                )
                            )
        on_alert = self.on_alert
        if not alerts or on_alert is None:
            return []
        return [lambda alert=alert: on_alert(alert) for alert in alerts]  # type: ignore[misc]
