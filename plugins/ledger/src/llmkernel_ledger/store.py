"""The ledger's SQLite store: schema and migrations, one row per call, sums.

SQLite in WAL mode through sqlite-utils; every write is one ``BEGIN IMMEDIATE``
transaction, so several processes can write the same file at once (each waits up to
``busy_timeout`` for the lock) and a process killed mid-burst loses no committed row.
Money is stored as exact decimal text and summed with a ``decimal_sum`` aggregate,
never as floats. ``request_id`` is unique: a call is recorded once, however often it
is offered.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import attrs

from llmkernel import log
from llmkernel_ledger.errors import sqlite_errors

if TYPE_CHECKING:
    import sqlite_utils

__all__ = [
    "COLUMNS",
    "GROUPS",
    "GROUP_SQL",
    "LedgerRow",
    "LedgerStore",
    "RowListener",
    "SqlTask",
    "connect",
    "period_keys",
]

BUSY_TIMEOUT_MS = 30_000

# (version, statements): append only; never edit an applied migration
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """
            CREATE TABLE IF NOT EXISTS requests (
                id INTEGER PRIMARY KEY,
                request_id TEXT NOT NULL UNIQUE,
                ts REAL NOT NULL,
                day TEXT NOT NULL,
                month TEXT NOT NULL,
                kind TEXT NOT NULL,
                status TEXT NOT NULL,
                error_kind TEXT,
                tenant TEXT,
                key TEXT,
                provider TEXT,
                provider_type TEXT,
                model TEXT,
                input_tokens INTEGER NOT NULL DEFAULT 0,
                cached_input_tokens INTEGER NOT NULL DEFAULT 0,
                cache_write_tokens INTEGER NOT NULL DEFAULT 0,
                cache_write_1h_tokens INTEGER NOT NULL DEFAULT 0,
                output_tokens INTEGER NOT NULL DEFAULT 0,
                reasoning_tokens INTEGER NOT NULL DEFAULT 0,
                cost TEXT,
                latency REAL,
                first_event_latency REAL,
                attempts INTEGER NOT NULL DEFAULT 0,
                cached INTEGER NOT NULL DEFAULT 0
            )
            """,
            "CREATE INDEX IF NOT EXISTS requests_day ON requests (day)",
            "CREATE INDEX IF NOT EXISTS requests_month ON requests (month)",
            "CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts)",
        ),
    ),
    # the call's other metadata (batch run, custom_id, ...) as JSON
    (2, ("ALTER TABLE requests ADD COLUMN metadata TEXT",)),
    # 1 when the token counts are the kernel's estimate (a stream stopped before the
    # provider reported its usage), not the provider's
    (3, ("ALTER TABLE requests ADD COLUMN usage_estimated INTEGER NOT NULL DEFAULT 0",)),
    # an A/B test's call: the experiment (the model name called) and its variant;
    # NULL for every other call, and for the rows from before (nothing rewritten)
    (
        4,
        (
            "ALTER TABLE requests ADD COLUMN experiment TEXT",
            "ALTER TABLE requests ADD COLUMN variant TEXT",
            "CREATE INDEX IF NOT EXISTS requests_variant ON requests (experiment, variant)",
        ),
    ),
)

COLUMNS = (
    "request_id",
    "ts",
    "day",
    "month",
    "kind",
    "status",
    "error_kind",
    "tenant",
    "key",
    "provider",
    "provider_type",
    "model",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost",
    "latency",
    "first_event_latency",
    "attempts",
    "cached",
    "metadata",
    "usage_estimated",
    "experiment",
    "variant",
)
GROUPS = (
    "day",
    "month",
    "provider",
    "model",
    "tenant",
    "key",
    "kind",
    "status",
    "error_kind",
    "experiment",
    "variant",
)
_TOKENS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
)


_QUALIFIED = "coalesce(provider, '-') || '/' || coalesce(model, '-')"
#: a variant is named with its experiment: variant ``a`` of two experiments are two
_VARIANT = (
    "CASE WHEN variant IS NULL THEN NULL ELSE coalesce(experiment, '-') || '/' || variant END"
)
#: the SQL expression each group (of :data:`GROUPS`) is
GROUP_SQL = {**{g: g for g in GROUPS}, "model": _QUALIFIED, "variant": _VARIANT}


def period_keys(ts: float, tz: ZoneInfo) -> tuple[str, str]:
    """The calendar day and month of epoch ``ts`` in ``tz``: ``("2026-11-30", "2026-11")``."""
    local = datetime.fromtimestamp(ts, tz)
    return local.strftime("%Y-%m-%d"), local.strftime("%Y-%m")


@attrs.frozen(kw_only=True)
class LedgerRow:
    """One call, however it ended. ``cost`` is ``None`` when unpriced; ``key`` is a
    key's name or hash, never the secret."""

    request_id: str
    ts: float
    kind: str = "chat"
    status: str = "ok"
    error_kind: str | None = None
    tenant: str | None = None
    key: str | None = None
    provider: str | None = None
    provider_type: str | None = None
    model: str | None = None
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost: Decimal | None = None
    latency: float | None = None
    first_event_latency: float | None = None
    attempts: int = 0
    cached: bool = False
    #: the call's metadata beyond tenant and key, as JSON (``{"batch": "run-1"}``)
    metadata: str | None = None
    #: the token counts (and so the cost) are an estimate, not the provider's report
    usage_estimated: bool = False
    #: an A/B test's call: the model name called (``[models.NAME] variants``)...
    experiment: str | None = None
    #: ... and the variant it was assigned (``ctx.variant``)
    variant: str | None = None

    def values(self, tz: ZoneInfo) -> dict[str, Any]:
        return dict(zip(COLUMNS, self.params(tz), strict=True))

    def params(self, tz: ZoneInfo, periods: _Periods | None = None) -> tuple[Any, ...]:
        """The row's values in :data:`COLUMNS` order (``periods`` memoizes the
        calendar day and month of nearby timestamps)."""
        day, month = (periods or _Periods(tz)).keys(self.ts)
        return (
            self.request_id,
            self.ts,
            day,
            month,
            self.kind,
            self.status,
            self.error_kind,
            self.tenant,
            self.key,
            self.provider,
            self.provider_type,
            self.model,
            self.input_tokens,
            self.cached_input_tokens,
            self.cache_write_tokens,
            self.cache_write_1h_tokens,
            self.output_tokens,
            self.reasoning_tokens,
            None if self.cost is None else format(self.cost, "f"),
            self.latency,
            self.first_event_latency,
            self.attempts,
            int(self.cached),
            self.metadata,
            int(self.usage_estimated),
            self.experiment,
            self.variant,
        )


class _Periods:
    """:func:`period_keys` for a run of timestamps, recomputed only when ``ts`` leaves
    the quarter hour of the last one: every zone's offset (and so its local midnight)
    is a whole number of quarter hours, so a quarter hour never spans two days."""

    __slots__ = ("last", "quarter", "tz")

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self.quarter = -1.0
        self.last = ("", "")

    def keys(self, ts: float) -> tuple[str, str]:
        quarter = ts // 900
        if quarter != self.quarter:
            self.last = period_keys(ts, self.tz)
            self.quarter = quarter
        return self.last


# A task the writer runs inside its batch's transaction (budgets settle this way).
SqlTask = Callable[[sqlite3.Connection], object]

_INSERT = (
    f"INSERT OR IGNORE INTO requests ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in COLUMNS)})"
)


def _run_in_savepoint(conn: sqlite3.Connection, task: SqlTask) -> None:
    conn.execute("SAVEPOINT ledger_task")
    try:
        task(conn)
    except Exception as exc:
        conn.execute("ROLLBACK TO ledger_task")
        conn.execute("RELEASE ledger_task")
        log.error("llmkernel.ledger.task_failed", error=f"{type(exc).__name__}: {exc}")
    else:
        conn.execute("RELEASE ledger_task")


# A listener runs inside the write transaction for the rows it inserted (never for
# a duplicate); it may write its own tables and returns callables to run after the
# commit (alerts, say).
RowListener = Callable[[sqlite3.Connection, Sequence[LedgerRow]], Iterable[Callable[[], None]]]


class _DecimalSum:
    def __init__(self) -> None:
        self.total = Decimal(0)
        self.seen = False

    def step(self, value: Any) -> None:
        if value is not None:
            self.total += Decimal(str(value))
            self.seen = True

    def finalize(self) -> str | None:
        return format(self.total, "f") if self.seen else None


def create_private(path: str | Path) -> None:
    """Create the database file ``0600`` (its directory ``0700``) if it does not
    exist, so SQLite opens a file only its owner can read; SQLite gives the ``-wal``
    and ``-shm`` files it makes beside it the database file's permissions. An
    existing file keeps its mode."""
    if str(path) == ":memory:" or str(path).startswith("file:"):
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def connect(
    path: str | Path, *, busy_timeout: float = BUSY_TIMEOUT_MS / 1000
) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, with a busy
    timeout and the ``decimal_sum`` aggregate; safe to share across threads when
    each use holds the store's lock. A new file is created ``0600``."""
    create_private(path)
    conn = sqlite3.connect(
        str(path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.create_aggregate("decimal_sum", 1, _DecimalSum)  # type: ignore[arg-type]
    return conn


class LedgerStore:
    """The ledger database: writes (from the writer thread) and reads (summaries,
    export). Migrations run once per database, under a write lock. The file is
    opened (and migrated) on first use; a file that cannot be opened then is tried
    again at the next use."""

    def __init__(
        self,
        path: str | Path,
        *,
        timezone: str = "UTC",
        lazy: bool = False,
        busy_timeout: float = BUSY_TIMEOUT_MS / 1000,
    ) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.tz = ZoneInfo(timezone)
        self.lock = threading.RLock()
        self.listeners: list[RowListener] = []
        self._periods = _Periods(self.tz)
        self.migrations: list[tuple[int, tuple[str, ...]]] = list(MIGRATIONS)
        self._conn: sqlite3.Connection | None = None
        #: the connection of :meth:`try_write_batch`: a busy timeout of 0, so a try
        #: never waits for another process's lock (opened with ``conn``)
        self._try_conn: sqlite3.Connection | None = None
        #: connections inherited across a fork: never used (nor closed) in the child
        self._inherited: list[sqlite3.Connection] = []
        if not lazy:
            _ = self.conn

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection, opened and migrated on first use."""
        conn = self._conn
        if conn is None:
            with self.lock:
                conn = self._conn
                if conn is None:
                    conn = connect(self.path, busy_timeout=self.busy_timeout)
                    try:
                        self._migrate(conn)
                        self._try_conn = connect(self.path, busy_timeout=0)
                    except BaseException:
                        conn.close()
                        raise
                    self._conn = conn
        return conn

    @property
    def connections(self) -> tuple[sqlite3.Connection, ...]:
        """Both open connections (the writer's and :meth:`try_write_batch`'s), for
        per-connection settings such as ``PRAGMA max_page_count``."""
        _ = self.conn
        return tuple(c for c in (self._conn, self._try_conn) if c is not None)

    def after_fork(self) -> None:
        """In a forked child: open a connection of its own at the next use (SQLite
        connections must not cross a fork; the parent's stays untouched)."""
        self.lock = threading.RLock()
        for conn in (self._conn, self._try_conn):
            if conn is not None:
                self._inherited.append(conn)
        self._conn = self._try_conn = None

    @property
    def db(self) -> sqlite_utils.Database:
        import sqlite_utils

        return sqlite_utils.Database(self.conn)

    def add_migrations(self, migrations: Iterable[tuple[int, Iterable[str]]]) -> None:
        """Another package's tables in the same file (budgets), with their own
        versions (use 1000 and up); applied at once."""
        self.migrations.extend((v, tuple(s)) for v, s in migrations)
        self.migrations.sort()
        self.migrate()

    def migrate(self) -> None:
        with self.lock:
            if self._conn is None:
                _ = self.conn  # opening migrates
            else:
                self._migrate(self._conn)

    def _migrate(self, connection: sqlite3.Connection) -> None:
        with self.lock, _Transaction(connection) as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS migrations "
                "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM migrations")}
            for version, statements in self.migrations:
                if version in done:
                    continue
                for statement in statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO migrations (version, applied_at) VALUES (?, ?)",
                    (version, time.time()),
                )

    def transaction(self) -> _Transaction:
        """``with store.transaction() as conn:`` one ``BEGIN IMMEDIATE`` transaction,
        committed on success, rolled back on error. Hold ``store.lock`` around it."""
        return _Transaction(self.conn)

    def add_listener(self, listener: RowListener) -> None:
        self.listeners.append(listener)

    def write(self, rows: Sequence[LedgerRow]) -> int:
        """Insert ``rows`` in one transaction (duplicates by ``request_id`` ignored),
        run listeners in it, then their after-commit callables. Returns how many
        rows were new."""
        return self.write_batch(rows)

    def write_batch(
        self, items: Sequence[LedgerRow | SqlTask], connection: sqlite3.Connection | None = None
    ) -> int:
        """Rows and :data:`SqlTask` s, in order, in ONE transaction (group commit).

        Rows are inserted (duplicates by ``request_id`` ignored) and the listeners
        see the new rows before the next task runs, so the order of effects is the
        order of ``items``. Each task runs in a savepoint: one that raises is
        rolled back alone and logged, the rest of the batch commits. A row that
        cannot be inserted (or a listener that raises) rolls back the whole batch.
        Returns how many rows were new."""
        after: list[Callable[[], None]] = []
        inserted_total = 0
        periods = self._periods
        with self.lock, _Transaction(connection or self.conn) as conn:
            inserted: list[LedgerRow] = []
            for item in items:
                if isinstance(item, LedgerRow):
                    cursor = conn.execute(_INSERT, item.params(self.tz, periods))
                    if cursor.rowcount == 1:
                        inserted.append(item)
                    continue
                if inserted:
                    inserted_total += len(inserted)
                    after.extend(self._notify(conn, inserted))
                    inserted = []
                _run_in_savepoint(conn, item)
            if inserted:
                inserted_total += len(inserted)
                after.extend(self._notify(conn, inserted))
        for callback in after:  # committed: a failing one must not look like a failed write
            try:
                callback()
            except Exception as exc:
                log.error(
                    "llmkernel.ledger.after_commit_failed", error=f"{type(exc).__name__}: {exc}"
                )
        return inserted_total

    def try_write_batch(self, items: Sequence[LedgerRow | SqlTask]) -> int | None:
        """:meth:`write_batch` without waiting for anyone: ``None``, with nothing
        written, when this process's lock is held (the writer thread, a budget's
        transaction) or another process holds the file's write lock (the
        connection it uses has a busy timeout of 0). Other errors are raised as by
        :meth:`write_batch`, the transaction rolled back."""
        if not self.lock.acquire(blocking=False):
            return None
        try:
            _ = self.conn  # opened (with the try connection) and migrated
            conn = self._try_conn
            if conn is None:
                return None
            try:
                return self.write_batch(items, conn)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    return None
                raise
        finally:
            self.lock.release()

    def _notify(
        self, conn: sqlite3.Connection, rows: Sequence[LedgerRow]
    ) -> list[Callable[[], None]]:
        after: list[Callable[[], None]] = []
        for listener in self.listeners:
            after.extend(listener(conn, rows))
        return after

    # ------------------------------------------------------------------ reading

    def count(self) -> int:
        with self.lock, sqlite_errors(self.path, "read the ledger"):
            return int(self.conn.execute("SELECT count(*) FROM requests").fetchone()[0])

    def total(self, *, since: float | None = None, until: float | None = None) -> Decimal:
        """The sum of every priced row's cost, exactly."""
        where, params = _range(since, until)
        with self.lock, sqlite_errors(self.path, "read the ledger"):
            value = self.conn.execute(
                f"SELECT decimal_sum(cost) FROM requests {where}", params
            ).fetchone()[0]
        return Decimal(value) if value is not None else Decimal(0)

    def summary(
        self,
        by: str | None = None,
        *,
        since: float | None = None,
        until: float | None = None,
        where: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Totals grouped ``by`` one of :data:`GROUPS` (or all rows as one group;
        ``model`` groups by ``provider/model``):
        ``requests``, ``unpriced`` (rows without a cost), ``errors``, ``cached``, each
        token bucket and ``cost`` (``Decimal``)."""
        if by is not None and by not in GROUPS:
            raise ValueError(f"cannot group by {by!r}; choose one of {', '.join(GROUPS)}")
        clause, params = _range(since, until)
        for column, value in (where or {}).items():
            if column not in GROUPS:
                raise ValueError(f"cannot filter by {column!r}")
            clause += (" AND " if clause else "WHERE ") + f"{column} = ?"
            params.append(value)
        # a model is named with its provider: gpt-4o on openai and on azure are two;
        # a variant with its experiment
        group = GROUP_SQL[by] if by else "'all'"
        sums = ", ".join(f"sum({t}) AS {t}" for t in _TOKENS)
        sql = (
            f"SELECT {group} AS grp, count(*) AS requests, "
            "sum(cost IS NULL AND status = 'ok') AS unpriced, "
            "sum(status != 'ok') AS errors, sum(cached) AS cached, "
            f"{sums}, decimal_sum(cost) AS cost FROM requests {clause} "
            f"GROUP BY grp ORDER BY grp"
        )
        with self.lock, sqlite_errors(self.path, "read the ledger"):
            cursor = self.conn.execute(sql, params)
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
        for row in rows:
            row[by or "group"] = row.pop("grp")
            row["cost"] = Decimal(row["cost"]) if row["cost"] is not None else Decimal(0)
            for name in ("requests", "unpriced", "errors", "cached", *_TOKENS):
                row[name] = int(row[name] or 0)
        return rows

    def rows(
        self, *, since: float | None = None, until: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every row in time order, as dicts with ``cost`` as exact text."""
        clause, params = _range(since, until)
        with self.lock, sqlite_errors(self.path, "read the ledger"):
            cursor = self.conn.execute(
                f"SELECT {', '.join(COLUMNS)} FROM requests {clause} ORDER BY ts, id", params
            )
            data = cursor.fetchall()
        for values in data:
            yield dict(zip(COLUMNS, values, strict=True))

    def close(self) -> None:
        with self.lock:
            for conn in (self._try_conn, self._conn):
                if conn is not None:
                    conn.close()
            self._conn = self._try_conn = None


def _range(since: float | None, until: float | None) -> tuple[str, list[Any]]:
    parts, params = [], []
    if since is not None:
        parts.append("ts >= ?")
        params.append(since)
    if until is not None:
        parts.append("ts < ?")
        params.append(until)
    return ("WHERE " + " AND ".join(parts)) if parts else "", params


class _Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
            except BaseException:  # a full disk can fail the COMMIT itself
                self._rollback()
                raise
        else:
            self._rollback()

    def _rollback(self) -> None:
        # SQLite may have rolled back already (a full disk, an I/O error)
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                log.warning("llmkernel.ledger.rollback_failed", error=str(exc))
