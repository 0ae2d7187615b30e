"""Where entries live: an in-process LRU and a persistent store behind it.

:class:`Store` is the small interface a persistent backend implements (SQLite
here; Redis later for several gateway instances). Its methods are plain blocking
calls: the cache runs them on its own worker thread, never on the event loop.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs

if TYPE_CHECKING:
    import sqlite3

    from llmkernel.types import Response

__all__ = [
    "Entry",
    "KeyMark",
    "MemoryLRU",
    "SQLiteStore",
    "Store",
    "Totals",
    "VectorRow",
    "create_private",
]


@attrs.frozen(kw_only=True)
class Entry:
    """One stored answer. ``expires`` is an epoch time, ``0`` for never."""

    namespace: str
    key: str
    body: str
    size: int
    model: str = ""
    created: float = 0.0
    expires: float = 0.0
    #: the semantic layer's: its partition, the prompt's vector (float32 bytes) and
    #: the prompt itself (the guards compare it); empty for exact-only entries
    partition: str = ""
    vector: bytes = b""
    prompt: str = ""

    def expired(self, now: float) -> bool:
        return 0 < self.expires <= now


@attrs.frozen(kw_only=True)
class VectorRow:
    """An entry of one semantic partition, as :meth:`SQLiteStore.vectors` reads it."""

    rowid: int
    key: str
    prompt: str
    vector: bytes
    expires: float


@attrs.frozen(kw_only=True)
class KeyMark:
    """How far :meth:`SQLiteStore.scan_keys` has read: the connection's
    ``data_version`` and the last row seen (its rowid and key)."""

    version: int
    rowid: int
    key: str


@attrs.frozen(kw_only=True)
class Totals:
    entries: int = 0
    bytes: int = 0


class Store(Protocol):
    """A persistent store of entries, safe across processes. Blocking methods, run
    by the cache on its worker thread."""

    def get(self, namespace: str, key: str, now: float) -> Entry | None:
        """The live entry, or ``None`` (absent or expired)."""
        ...

    def put(self, entry: Entry) -> None:
        """Insert or replace ``entry``, then evict down to the store's limits."""
        ...

    def delete(self, namespace: str, key: str) -> bool:
        """Remove one entry; whether it was there."""
        ...

    def clear(self, namespace: str | None = None) -> int:
        """Remove every entry, or every entry of ``namespace``; how many."""
        ...

    def totals(self) -> Totals:
        """Entries and bytes across every namespace."""
        ...

    def namespaces(self) -> Mapping[str, Totals]:
        """Entries and bytes per namespace."""
        ...

    def close(self) -> None: ...


# A store may also have (the cache uses what it finds):
#   put_many(entries)                      the queued writes in one call
#   scan_keys(mark)                        the in-memory key filter (see SQLiteStore)
#   vectors(namespace, partition, after)   the semantic layer's rows of a partition
#   add_counts(deltas) / counts()          hit and miss counts shared by processes


def create_private(path: str) -> None:
    """Create ``path`` (and its directory) readable by its owner only, unless it
    exists. SQLite gives the ``-wal`` and ``-shm`` files the database file's mode."""
    import os

    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


# ---------------------------------------------------------------------- memory


@attrs.define(kw_only=True)
class _Slot:
    response: Response
    size: int
    expires: float


class MemoryLRU:
    """Least-recently-used responses, bounded in entries and bytes; thread-safe.

    Holds the decoded :class:`~llmkernel.types.Response`, so a memory hit decodes
    nothing.
    """

    def __init__(self, *, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evictions = 0
        self._slots: OrderedDict[tuple[str, str], _Slot] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._slots)

    def get(self, namespace: str, key: str, now: float) -> Response | None:
        with self._lock:
            slot = self._slots.get((namespace, key))
            if slot is None:
                return None
            if 0 < slot.expires <= now:
                self._drop((namespace, key))
                return None
            self._slots.move_to_end((namespace, key))
            return slot.response

    def put(self, namespace: str, key: str, response: Response, size: int, expires: float) -> None:
        if self.max_entries == 0 or size > self.max_bytes:
            return
        with self._lock:
            self._drop((namespace, key))
            self._slots[(namespace, key)] = _Slot(response=response, size=size, expires=expires)
            self.bytes += size
            while len(self._slots) > self.max_entries or self.bytes > self.max_bytes:
                oldest = next(iter(self._slots))
                self._drop(oldest)
                self.evictions += 1

    def delete(self, namespace: str, key: str) -> bool:
        with self._lock:
            return self._drop((namespace, key))

    def clear(self, namespace: str | None = None) -> int:
        with self._lock:
            doomed = [k for k in self._slots if namespace is None or k[0] == namespace]
            for k in doomed:
                self._drop(k)
            return len(doomed)

    def _drop(self, k: tuple[str, str]) -> bool:
        slot = self._slots.pop(k, None)
        if slot is None:
            return False
        self.bytes -= slot.size
        return True


# ---------------------------------------------------------------------- sqlite

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS responses (namespace TEXT NOT NULL, key TEXT NOT NULL, "
    "model TEXT, created REAL, expires REAL, last_used REAL, size INTEGER, body TEXT, "
    "partition TEXT, vector BLOB, prompt TEXT, "
    "PRIMARY KEY (namespace, key))",
    "CREATE INDEX IF NOT EXISTS responses_partition ON responses (namespace, partition) "
    "WHERE partition IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS totals (id INTEGER PRIMARY KEY CHECK (id = 0), "
    "entries INTEGER NOT NULL, bytes INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO totals (id, entries, bytes) VALUES (0, 0, 0)",
    "CREATE INDEX IF NOT EXISTS responses_last_used ON responses (last_used)",
    "CREATE INDEX IF NOT EXISTS responses_expires ON responses (expires)",
    "CREATE TABLE IF NOT EXISTS counts (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS responses_insert AFTER INSERT ON responses BEGIN "
    "UPDATE totals SET entries = entries + 1, bytes = bytes + NEW.size WHERE id = 0; END",
    "CREATE TRIGGER IF NOT EXISTS responses_delete AFTER DELETE ON responses BEGIN "
    "UPDATE totals SET entries = entries - 1, bytes = bytes - OLD.size WHERE id = 0; END",
    "CREATE TRIGGER IF NOT EXISTS responses_update AFTER UPDATE OF size ON responses BEGIN "
    "UPDATE totals SET bytes = bytes - OLD.size + NEW.size WHERE id = 0; END",
)


def _retry_locked(fn: Callable[[str], None], path: str, *, seconds: float = 30.0) -> None:
    """Run ``fn``, again while another process holds a lock SQLite will not wait
    for (switching a new file to WAL)."""
    import sqlite3

    deadline = time.monotonic() + seconds
    delay = 0.005
    while True:
        try:
            fn(path)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(0.1, delay * 2)


class SQLiteStore:
    """Entries in one SQLite file (sqlite-utils, WAL), shared safely by threads of
    one process through the cache's worker and by several processes through
    SQLite's locking. Totals are kept by triggers, so limits are checked without
    scanning the table."""

    def __init__(
        self,
        path: str,
        *,
        max_entries: int,
        max_bytes: int,
        touch_batch: int = 64,
    ) -> None:
        import sqlite3

        import sqlite_utils

        if path != ":memory:":
            create_private(path)
        self.path = path
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.evictions = 0
        self._touch_batch = touch_batch
        self._touched: dict[tuple[str, str], float] = {}
        self._conn: sqlite3.Connection = sqlite3.connect(
            path, timeout=30.0, check_same_thread=False, isolation_level=None
        )
        self._db = sqlite_utils.Database(self._conn)
        self._conn.execute("PRAGMA busy_timeout=30000")
        _retry_locked(self._setup, path)

    def _setup(self, path: str) -> None:
        """WAL and the schema, once per file; safe when several processes start at once
        (each step waits for the others' locks)."""
        if path != ":memory:" and self._db.journal_mode != "wal":
            self._db.enable_wal()
        self._conn.execute("PRAGMA synchronous=NORMAL")
        responses = self._db["responses"]
        if (
            responses.exists()
            and self._db["totals"].exists()
            and self._db["counts"].exists()
            and "prompt" in responses.columns_dict
        ):
            return
        with self._write():
            if responses.exists():  # a file of an earlier version: the semantic columns
                have = responses.columns_dict
                for column, kind in (("partition", "TEXT"), ("vector", "BLOB"), ("prompt", "TEXT")):
                    if column not in have:
                        self._conn.execute(f"ALTER TABLE responses ADD COLUMN {column} {kind}")
            for statement in _SCHEMA:
                self._conn.execute(statement)

    def _write(self) -> _Transaction:
        return _Transaction(self._conn)

    def get(self, namespace: str, key: str, now: float) -> Entry | None:
        row = self._conn.execute(
            "SELECT body, size, model, created, expires FROM responses "
            "WHERE namespace = ? AND key = ?",
            (namespace, key),
        ).fetchone()
        if row is None:
            return None
        body, size, model, created, expires = row
        if 0 < expires <= now:
            return None
        self._touched[(namespace, key)] = now
        if len(self._touched) >= self._touch_batch:
            self.flush()
        return Entry(
            namespace=namespace,
            key=key,
            body=body,
            size=size,
            model=model,
            created=created,
            expires=expires,
        )

    def flush(self) -> None:
        """Write the pending last-used times of read entries (batched: reads write
        nothing on their own)."""
        if not self._touched:
            return
        touched, self._touched = self._touched, {}
        with self._write():
            self._conn.executemany(
                "UPDATE responses SET last_used = max(last_used, ?) "
                "WHERE namespace = ? AND key = ?",
                [(t, ns, k) for (ns, k), t in touched.items()],
            )

    def put(self, entry: Entry) -> None:
        self.put_many([entry])

    def put_many(self, entries: Sequence[Entry]) -> None:
        """Insert or replace ``entries`` in one transaction, then delete expired rows
        and evict down to the limits once."""
        if not entries:
            return
        now = max(entry.created for entry in entries) or time.time()
        touched, self._touched = self._touched, {}
        with self._write():
            if touched:
                self._conn.executemany(
                    "UPDATE responses SET last_used = max(last_used, ?) "
                    "WHERE namespace = ? AND key = ?",
                    [(t, ns, k) for (ns, k), t in touched.items()],
                )
            self._conn.executemany(
                "INSERT INTO responses (namespace, key, model, created, expires, "
                "last_used, size, body, partition, vector, prompt) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (namespace, key) DO UPDATE SET model = excluded.model, "
                "created = excluded.created, expires = excluded.expires, "
                "last_used = excluded.last_used, size = excluded.size, body = excluded.body, "
                "partition = excluded.partition, vector = excluded.vector, "
                "prompt = excluded.prompt",
                [
                    (
                        entry.namespace,
                        entry.key,
                        entry.model,
                        entry.created or now,
                        entry.expires,
                        entry.created or now,
                        entry.size,
                        entry.body,
                        entry.partition or None,
                        entry.vector or None,
                        entry.prompt or None,
                    )
                    for entry in entries
                ],
            )
            self._conn.execute("DELETE FROM responses WHERE expires > 0 AND expires <= ?", (now,))
            self._evict()

    def scan_keys(self, mark: KeyMark | None) -> tuple[KeyMark, list[str], bool]:
        """The keys written since ``mark`` (by any connection), for the cache's
        :class:`~llmkernel_cache.known.KeyFilter`: ``(new mark, keys, whole)``.

        ``whole`` is true when ``keys`` is every key in the store (no mark yet, or
        the rows the mark points at are gone, so rowids may have been reused).
        Cheap when nothing changed: ``PRAGMA data_version`` says whether another
        connection committed since the mark (this connection's own writes are
        known to the cache already)."""
        conn = self._conn
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if mark is not None and mark.version == version:
            return mark, [], False
        conn.execute("BEGIN")  # one snapshot for the check and the read
        try:
            after = 0
            if mark is not None and mark.rowid > 0:
                row = conn.execute(
                    "SELECT key FROM responses WHERE rowid = ?", (mark.rowid,)
                ).fetchone()
                # rows are only added past the largest rowid while that row lives
                if row is not None and row[0] == mark.key:
                    after = mark.rowid
            rows = conn.execute(
                "SELECT rowid, key FROM responses WHERE rowid > ? ORDER BY rowid", (after,)
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        # (a mark at rowid 0 was an empty store: every row now is new, none is lost)
        whole = mark is None or after != mark.rowid
        if rows:
            rowid, key = rows[-1]
        elif whole:
            rowid, key = 0, ""
        else:
            assert mark is not None
            rowid, key = mark.rowid, mark.key
        return KeyMark(version=version, rowid=rowid, key=key), [k for _, k in rows], whole

    def vectors(
        self, namespace: str, partition: str, after: int, now: float
    ) -> tuple[int, list[VectorRow]]:
        """The live rows of one semantic partition past rowid ``after``: ``(the
        largest rowid read, rows)``. Rows written since by any process come next."""
        rows = self._conn.execute(
            "SELECT rowid, key, prompt, vector, expires FROM responses "
            "WHERE namespace = ? AND partition = ? AND rowid > ? "
            "AND (expires = 0 OR expires > ?) ORDER BY rowid",
            (namespace, partition, after, now),
        ).fetchall()
        out = [
            VectorRow(rowid=r[0], key=r[1], prompt=r[2] or "", vector=r[3] or b"", expires=r[4])
            for r in rows
        ]
        return (out[-1].rowid if out else after), out

    def version(self) -> int:
        """SQLite's ``data_version``: changes when another connection commits."""
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def add_counts(self, deltas: Mapping[str, int]) -> None:
        """Add to the hit and miss counts kept in the file (every process's)."""
        if not deltas:
            return
        with self._write():
            self._conn.executemany(
                "INSERT INTO counts (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                list(deltas.items()),
            )

    def counts(self) -> dict[str, int]:
        """The counts every process added, by name."""
        return dict(self._conn.execute("SELECT name, value FROM counts ORDER BY name").fetchall())

    def _evict(self) -> None:
        entries, size = self._conn.execute(
            "SELECT entries, bytes FROM totals WHERE id = 0"
        ).fetchone()
        if entries > self.max_entries:
            extra = entries - self.max_entries
            self._conn.execute(
                "DELETE FROM responses WHERE rowid IN "
                "(SELECT rowid FROM responses ORDER BY last_used LIMIT ?)",
                (extra,),
            )
            self.evictions += extra
            entries, size = self._conn.execute(
                "SELECT entries, bytes FROM totals WHERE id = 0"
            ).fetchone()
        while size > self.max_bytes and entries > 0:
            # drop the least recently used until under the limit, a small batch at a time
            rows = self._conn.execute(
                "SELECT rowid, size FROM responses ORDER BY last_used LIMIT 32"
            ).fetchall()
            doomed = []
            for rowid, row_size in rows:
                if size <= self.max_bytes:
                    break
                doomed.append((rowid,))
                size -= row_size
            self._conn.executemany("DELETE FROM responses WHERE rowid = ?", doomed)
            self.evictions += len(doomed)
            entries, size = self._conn.execute(
                "SELECT entries, bytes FROM totals WHERE id = 0"
            ).fetchone()

    def delete(self, namespace: str, key: str) -> bool:
        with self._write():
            cursor = self._conn.execute(
                "DELETE FROM responses WHERE namespace = ? AND key = ?", (namespace, key)
            )
        return cursor.rowcount > 0

    def clear(self, namespace: str | None = None) -> int:
        with self._write():
            if namespace is None:
                cursor = self._conn.execute("DELETE FROM responses")
            else:
                cursor = self._conn.execute(
                    "DELETE FROM responses WHERE namespace = ?", (namespace,)
                )
        self._touched.clear()
        return cursor.rowcount

    def totals(self) -> Totals:
        entries, size = self._conn.execute(
            "SELECT entries, bytes FROM totals WHERE id = 0"
        ).fetchone()
        return Totals(entries=entries, bytes=size)

    def namespaces(self) -> dict[str, Totals]:
        rows = self._conn.execute(
            "SELECT namespace, count(*), coalesce(sum(size), 0) FROM responses "
            "GROUP BY namespace ORDER BY namespace"
        ).fetchall()
        return {ns: Totals(entries=n, bytes=b) for ns, n, b in rows}

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._conn.close()


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``: takes the write lock up front, so two
    processes never deadlock upgrading a read lock."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, *rest: object) -> None:
        self._conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")
