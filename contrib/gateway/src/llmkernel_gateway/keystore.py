"""The key store: keys made at run time, the deployments' live settings, the
reload counter and the audit trail, which every worker and instance reads.

Two backends behind :class:`KeyStore`:

- :class:`SQLiteKeyStore` (the default): one SQLite file in the gateway's data
  directory (``$XDG_DATA_HOME/llmkernel/gateway/keys.db``, ``keys_path`` moves it),
  sqlite-utils, WAL, created 0600, so every worker of ``llmkernel serve --workers N``
  and every instance on the machine shares it. Each change is one ``BEGIN
  IMMEDIATE`` transaction: the record, the version counter and the audit row
  together, so a crash never leaves a change without its audit or the other way.
- :class:`~llmkernel_gateway.redisstore.RedisKeyStore` when ``[redis]`` is set: the
  records in Redis (``llmkernel-redis``'s key-record primitive), so every instance
  of a fleet sees a change.

Readers poll :meth:`KeyStore.stamp` (one read) every ``control_refresh`` seconds and
read a whole :class:`Snapshot` when it moved. When a key was last used is kept
apart (:meth:`KeyStore.touch`) and never moves the stamp: using a key reloads
nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import attrs

from llmkernel_gateway.records import KeyRecord

if TYPE_CHECKING:
    import sqlite3

    from llmkernel.config import Config
    from llmkernel_gateway.settings import GatewaySettings

__all__ = [
    "AUDIT_LIMIT",
    "Conflict",
    "KeyStore",
    "Missing",
    "SQLiteKeyStore",
    "Snapshot",
    "default_path",
    "instance_name",
    "open_store",
]

#: audit entries one read returns at most
AUDIT_LIMIT = 1000
T = TypeVar("T")
#: a change of one key: the record now (``None``: none) to the record to keep
#: (``None``: delete it); may raise :class:`~llmkernel_gateway.records.BadInput`
Change = Callable[[KeyRecord | None], KeyRecord | None]


class Conflict(Exception):
    """A key of that name exists already."""


class Missing(Exception):
    """No key (or deployment) of that name."""


def instance_name() -> str:
    """``host:pid``: which process made an audit entry."""
    return f"{socket.gethostname()}:{os.getpid()}"


@attrs.frozen(kw_only=True)
class Snapshot:
    """Everything the store holds that changes how requests are served."""

    stamp: Hashable
    records: Mapping[str, KeyRecord]
    #: ``provider/model`` -> its live settings (``disabled``, ``priority``, ``weight``)
    deployments: Mapping[str, Mapping[str, Any]]
    #: bumped by ``POST /admin/reload``: every reader reloads its config file
    generation: int
    #: the store has held a key: the gateway asks for keys even once none is left
    #: (revoking the last key never opens it)
    keyed: bool = False


class KeyStore(Protocol):
    """What the gateway needs of a key store; every method may do I/O."""

    where: str  # said in messages: the file, or the Redis

    async def stamp(self) -> Hashable:
        """A value that changes with every change (not with :meth:`touch`)."""

    async def snapshot(self) -> Snapshot: ...

    async def change_key(
        self, name: str, change: Change, *, actor: str, action: str, details: Mapping[str, Any]
    ) -> KeyRecord | None:
        """Apply ``change`` to key ``name`` atomically and audit it; the new record."""

    async def set_deployment(
        self, name: str, settings: Mapping[str, Any], *, actor: str, details: Mapping[str, Any]
    ) -> None:
        """Keep a deployment's live settings (empty: back to the config's)."""

    async def request_reload(self, *, actor: str) -> int:
        """Bump the reload counter (audited); its new value."""

    async def record_audit(self, *, actor: str, action: str, target: str, details: Any) -> None: ...

    async def touch(self, used: Mapping[str, float]) -> None:
        """Keys' last use (epoch seconds), kept when later than what is stored."""

    async def last_used(self) -> dict[str, float]: ...

    async def audit(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest audit entries first."""

    async def aclose(self) -> None: ...


def default_path() -> str:
    """``$XDG_DATA_HOME/llmkernel/gateway/keys.db`` (``~/.local/share/...``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "llmkernel" / "gateway" / "keys.db")


def open_store(settings: GatewaySettings, config: Config) -> KeyStore:
    """Redis when ``[redis]`` is set (and ``[plugin.gateway] keys_path`` is not),
    else the SQLite file."""
    if config.redis and not settings.keys_path:
        from llmkernel_gateway.redisstore import RedisKeyStore

        return RedisKeyStore.from_config(config)
    return SQLiteKeyStore(settings.keys_path or default_path())


class SQLiteKeyStore:
    """The key store in one SQLite file (see the module's docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.where = str(self.path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"<SQLiteKeyStore {self.path}>"

    # ------------------------------------------------------------------ plumbing

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = _connect(self.path)
        return self._conn

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            return fn(self._connection())

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(conn)`` in one ``BEGIN IMMEDIATE`` transaction."""

        def run(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return self._run(run)

    async def _thread(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        return await asyncio.to_thread(self._write if write else self._run, fn)

    # ------------------------------------------------------------------ reading

    async def stamp(self) -> Hashable:
        return await self._thread(_version)

    async def snapshot(self) -> Snapshot:
        def read(conn: sqlite3.Connection) -> Snapshot:
            conn.execute("BEGIN")  # one consistent view
            try:
                stamp = _version(conn)
                records = {
                    name: KeyRecord.from_json(json.loads(text))
                    for name, text in conn.execute("SELECT name, record FROM keys")
                }
                deployments = {
                    name: json.loads(text)
                    for name, text in conn.execute("SELECT name, settings FROM deployments")
                }
                generation = _meta(conn, "generation")
                keyed = bool(records) or (
                    conn.execute(
                        "SELECT 1 FROM audit WHERE action = 'key.create' LIMIT 1"
                    ).fetchone()
                    is not None
                )
            finally:
                conn.execute("COMMIT")
            return Snapshot(
                stamp=stamp,
                records=records,
                deployments=deployments,
                generation=generation,
                keyed=keyed,
            )

        return await self._thread(read)

    async def last_used(self) -> dict[str, float]:
        def read(conn: sqlite3.Connection) -> dict[str, float]:
            return {n: float(t) for n, t in conn.execute("SELECT name, last_used FROM key_usage")}

        return await self._thread(read)

    async def audit(self, limit: int = 100) -> list[dict[str, Any]]:
        limit = max(1, min(int(limit), AUDIT_LIMIT))

        def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(
                "SELECT ts, actor, action, target, details, instance FROM audit "
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            )
            return [
                {
                    "ts": ts,
                    "actor": actor,
                    "action": action,
                    "target": target,
                    "details": json.loads(details) if details else {},
                    "instance": instance,
                }
                for ts, actor, action, target, details, instance in rows
            ]

        return await self._thread(read)

    # ------------------------------------------------------------------ writing

    async def change_key(
        self, name: str, change: Change, *, actor: str, action: str, details: Mapping[str, Any]
    ) -> KeyRecord | None:
        def write(conn: sqlite3.Connection) -> KeyRecord | None:
            row = conn.execute("SELECT record FROM keys WHERE name = ?", (name,)).fetchone()
            current = KeyRecord.from_json(json.loads(row[0])) if row else None
            new = change(current)
            if new is None:
                conn.execute("DELETE FROM keys WHERE name = ?", (name,))
                conn.execute("DELETE FROM key_usage WHERE name = ?", (name,))
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO keys (name, record) VALUES (?, ?)",
                    (name, json.dumps(new.to_json(), sort_keys=True)),
                )
            _bump(conn, "version")
            _audit(conn, actor, action, name, details)
            return new

        return await self._thread(write, write=True)

    async def set_deployment(
        self, name: str, settings: Mapping[str, Any], *, actor: str, details: Mapping[str, Any]
    ) -> None:
        def write(conn: sqlite3.Connection) -> None:
            if settings:
                conn.execute(
                    "INSERT OR REPLACE INTO deployments (name, settings) VALUES (?, ?)",
                    (name, json.dumps(dict(settings), sort_keys=True)),
                )
            else:
                conn.execute("DELETE FROM deployments WHERE name = ?", (name,))
            _bump(conn, "version")
            _audit(conn, actor, "deployment.update", name, details)

        await self._thread(write, write=True)

    async def request_reload(self, *, actor: str) -> int:
        def write(conn: sqlite3.Connection) -> int:
            _bump(conn, "version")
            generation = _bump(conn, "generation")
            _audit(conn, actor, "config.reload", "", {"generation": generation})
            return generation

        return await self._thread(write, write=True)

    async def record_audit(self, *, actor: str, action: str, target: str, details: Any) -> None:
        await self._thread(lambda conn: _audit(conn, actor, action, target, details), write=True)

    async def touch(self, used: Mapping[str, float]) -> None:
        if not used:
            return

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO key_usage (name, last_used) VALUES (?, ?) ON CONFLICT(name) "
                "DO UPDATE SET last_used = max(last_used, excluded.last_used)",
                list(used.items()),
            )

        await self._thread(write, write=True)

    async def aclose(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _meta(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row else 0


def _version(conn: sqlite3.Connection) -> int:
    return _meta(conn, "version")


def _bump(conn: sqlite3.Connection, name: str) -> int:
    conn.execute(
        "INSERT INTO meta (name, value) VALUES (?, 1) "
        "ON CONFLICT(name) DO UPDATE SET value = value + 1",
        (name,),
    )
    return _meta(conn, name)


def _audit(conn: sqlite3.Connection, actor: str, action: str, target: str, details: Any) -> None:
    conn.execute(
        "INSERT INTO audit (ts, actor, action, target, details, instance) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (time.time(), actor, action, target, json.dumps(details, sort_keys=True), instance_name()),
    )


def _connect(path: Path) -> sqlite3.Connection:
    """The database, made if missing (its directory 0700, the file 0600), WAL,
    autocommit (transactions are explicit), with its tables."""
    import sqlite_utils

    from llmkernel_gateway.store import private_database

    conn = private_database(path, synchronous="FULL")  # few writes: each survives a power cut
    db = sqlite_utils.Database(conn)
    conn.execute("BEGIN IMMEDIATE")  # several workers may open a new file at once
    try:
        db.table("keys").create(
            {"name": str, "record": str}, pk="name", not_null={"record"}, if_not_exists=True
        )
        db.table("key_usage").create(
            {"name": str, "last_used": float}, pk="name", if_not_exists=True
        )
        db.table("deployments").create(
            {"name": str, "settings": str}, pk="name", not_null={"settings"}, if_not_exists=True
        )
        db.table("meta").create({"name": str, "value": int}, pk="name", if_not_exists=True)
        db.table("audit").create(
            {
                "id": int,
                "ts": float,
                "actor": str,
                "action": str,
                "target": str,
                "details": str,
                "instance": str,
            },
            pk="id",
            if_not_exists=True,
        )
    except BaseException:
        conn.execute("ROLLBACK")
        conn.close()
        raise
    conn.execute("COMMIT")
    return conn
