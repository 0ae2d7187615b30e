"""Where ``/v1/responses`` keeps what ``previous_response_id`` continues.

A stored response is the response object as it was answered and the whole
conversation behind it (the kernel's messages: input, then the answer), so a later
request continues it on any provider: the turns are replayed, never fetched from
an upstream. Records belong to a tenant (a key's ``tenant``) and live for
``[plugin.gateway] responses_ttl`` seconds; another tenant's id, an expired one or
a deleted one is missing (a 404), never a different tenant's data.

:class:`ResponseStore` is the interface (``put``, ``get``, ``delete``, ``aclose``),
so a shared backend (Redis) can sit beside :class:`SQLiteResponseStore`, the
default: one SQLite file (sqlite-utils, WAL, created 0600) that every worker of
``llmkernel serve --workers N`` opens. Each write commits before the answer is
sent, so an id a client has seen survives a crash. ``responses_store = "none"``
keeps nothing (``store`` is then as if always false).

Conversations are stored as JSON (:func:`messages_json`, :func:`messages_from_json`),
zlib-compressed: every part the kernel has (text, images, reasoning with its
signature, tool calls with theirs) comes back as it was.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from llmkernel.types import ImagePart, Message, Part, ReasoningPart, TextPart, ToolCall

if TYPE_CHECKING:
    import sqlite3

    from llmkernel_gateway.settings import GatewaySettings

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
#: Purge expired rows at most this often (seconds), on a write.
PURGE_EVERY = 60.0
BUSY_TIMEOUT_MS = 5000


@attrs.frozen(kw_only=True)
class StoredResponse:
    """One stored response: ``response`` is the object as answered (``GET``
    returns it), ``conversation`` the kernel messages behind it, in order."""

    id: str
    tenant: str
    created_at: float
    expires_at: float
    response: Mapping[str, Any]
    conversation: tuple[Message, ...]


class ResponseStore(Protocol):
    """What the gateway needs of a response store; every method may do I/O."""

    async def put(self, record: StoredResponse) -> None:
        """Keep ``record`` (replacing one with the same id and tenant)."""

    async def get(self, tenant: str, response_id: str) -> StoredResponse | None:
        """The record, or ``None`` when missing, expired or another tenant's."""

    async def delete(self, tenant: str, response_id: str) -> bool:
        """Forget the record; whether there was one (of this tenant)."""

    async def aclose(self) -> None:
        """Release connections."""


class NoStore:
    """``responses_store = "none"``: nothing is kept."""

    async def put(self, record: StoredResponse) -> None:
        return None

    async def get(self, tenant: str, response_id: str) -> StoredResponse | None:
        return None

    async def delete(self, tenant: str, response_id: str) -> bool:
        return False

    async def aclose(self) -> None:
        return None


def default_path() -> str:
    """``$XDG_DATA_HOME/llmkernel/gateway/responses.db`` (``~/.local/share/...``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "llmkernel" / "gateway" / "responses.db")


class SQLiteResponseStore:
    """Records in one SQLite file; processes share it (WAL, busy timeout).

    A ``put`` of a small record with no write queued commits at once on the calling
    thread when the database is free this instant (no waiting: busy timeout 0): one
    commit of about 60 µs, no thread hop (measured: a thread hop each way cost more
    than the commit). Otherwise (the database locked by another process, writes
    queued, a large record) it goes to one writer thread
    that commits whatever is queued in one transaction (group commit: fifty
    concurrent answers cost one commit, not fifty) and wakes each waiting ``put``
    once its record is committed. Reads run in a worker thread on their own
    connection."""

    #: records up to this many bytes of JSON may be written on the calling thread
    INLINE_BYTES = 64 * 1024
    #: inline writes between two WAL checkpoints, which the writer thread runs (a
    #: checkpoint syncs the file: never on the calling thread)
    CHECKPOINT_EVERY = 1000

    def __init__(self, path: str | Path, *, max_bytes: int = 128 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes  # of one record's JSON: a longer one is refused
        self._lock = threading.Lock()  # the reading connection
        self._reader: sqlite3.Connection | None = None
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._pending = 0  # puts handed to the writer and not yet settled
        self._inline: sqlite3.Connection | None = None
        self._inline_lock = threading.Lock()
        self._inline_writes = 0
        self._purged = 0.0

    def _read_connection(self) -> sqlite3.Connection:
        if self._reader is None:
            self._reader = _connect(self.path)
        return self._reader

    # -- writes

    async def put(self, record: StoredResponse) -> None:
        """Queue the record for the writer (which also serializes it, off the event
        loop) and return once it is committed; a record over ``max_bytes`` raises
        :class:`ValueError`."""
        import asyncio

        if not self._pending and self._write_inline(record):
            self._inline_writes += 1
            if self._inline_writes % self.CHECKPOINT_EVERY == 0:
                self._queue.put(_CHECKPOINT)
                self._start_writer()
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending += 1
        done.add_done_callback(self._settled)
        self._queue.put(_Write(record=record, loop=loop, future=done))
        self._start_writer()
        await done

    def _start_writer(self) -> None:
        if self._writer is None or not self._writer.is_alive():
            self._writer = threading.Thread(
                target=self._write_loop, name="llmkernel-gateway-responses", daemon=True
            )
            self._writer.start()

    def _settled(self, _: Any) -> None:
        self._pending -= 1

    def _write_inline(self, record: StoredResponse) -> bool:
        """Commit ``record`` now if that cannot wait on anything; whether it did."""
        import sqlite3

        if not self._inline_lock.acquire(blocking=False):
            return False
        try:
            row = self._row(record)
            if len(row[4]) > self.INLINE_BYTES:
                return False  # the writer serializes it again, off the loop: rare
            if self._inline is None:
                self._inline = _connect(self.path)
                self._inline.execute("PRAGMA busy_timeout = 0")
                self._inline.execute("PRAGMA wal_autocheckpoint = 0")
            conn = self._inline
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:  # locked by another process: the writer waits
                return False
            try:
                conn.execute(_INSERT, row)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return True
        finally:
            self._inline_lock.release()

    def _write_loop(self) -> None:
        conn = _connect(self.path)
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                if first is _CHECKPOINT:  # and the expired rows go
                    conn.execute("DELETE FROM responses WHERE expires_at < ?", (time.time(),))
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    continue
                batch = [first]
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        self._commit(conn, batch)
                        return
                    if item is not _CHECKPOINT:
                        batch.append(item)
                self._commit(conn, batch)
        finally:
            conn.close()

    def _row(self, record: StoredResponse) -> tuple[Any, ...]:
        text = _dumps(
            {"response": record.response, "conversation": messages_json(record.conversation)}
        ).encode()
        if len(text) > self.max_bytes:
            raise ValueError(
                f"response {record.id} with its conversation is {len(text)} bytes, over the "
                f"store's limit of {self.max_bytes}"
            )
        return (
            record.id,
            record.tenant,
            record.created_at,
            record.expires_at,
            zlib.compress(text, 1),
        )

    def _commit(self, conn: sqlite3.Connection, batch: list[_Write]) -> None:
        rows, kept = [], []
        for write in batch:
            try:
                rows.append(self._row(write.record))
                kept.append(write)
            except Exception as exc:
                write.loop.call_soon_threadsafe(_settle, write.future, exc)
        batch = kept
        error: Exception | None = None
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_INSERT, rows)
            now = time.time()
            if now - self._purged >= PURGE_EVERY:
                self._purged = now
                conn.execute("DELETE FROM responses WHERE expires_at < ?", (now,))
            conn.execute("COMMIT")
        except Exception as exc:
            error = exc
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        for write in batch:
            write.loop.call_soon_threadsafe(_settle, write.future, error)

    # -- reads

    async def get(self, tenant: str, response_id: str) -> StoredResponse | None:
        import asyncio

        return await asyncio.to_thread(self._get, tenant, response_id)

    def _get(self, tenant: str, response_id: str) -> StoredResponse | None:
        with self._lock:
            row = (
                self._read_connection()
                .execute(
                    "SELECT created_at, expires_at, body FROM responses "
                    "WHERE id = ? AND tenant = ? AND expires_at >= ?",
                    (response_id, tenant, time.time()),
                )
                .fetchone()
            )
        if row is None:
            return None
        created_at, expires_at, body = row
        data = json.loads(zlib.decompress(body))
        return StoredResponse(
            id=response_id,
            tenant=tenant,
            created_at=created_at,
            expires_at=expires_at,
            response=data["response"],
            conversation=messages_from_json(data["conversation"]),
        )

    async def delete(self, tenant: str, response_id: str) -> bool:
        import asyncio

        return await asyncio.to_thread(self._delete, tenant, response_id)

    def _delete(self, tenant: str, response_id: str) -> bool:
        with self._lock:
            cursor = self._read_connection().execute(
                "DELETE FROM responses WHERE id = ? AND tenant = ? AND expires_at >= ?",
                (response_id, tenant, time.time()),
            )
            return cursor.rowcount > 0

    async def aclose(self) -> None:
        """Commit what is queued, then close."""
        import asyncio

        writer = self._writer
        if writer is not None and writer.is_alive():
            self._queue.put(None)
            await asyncio.to_thread(writer.join, 30)
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        with self._inline_lock:
            if self._inline is not None:
                self._inline.close()
                self._inline = None


_INSERT = (
    "INSERT OR REPLACE INTO responses (id, tenant, created_at, expires_at, body) "
    "VALUES (?, ?, ?, ?, ?)"
)


_CHECKPOINT: Any = object()  # a writer queue item: checkpoint the WAL


@attrs.frozen
class _Write:
    record: StoredResponse
    loop: Any
    future: Any


def _settle(future: Any, error: Exception | None) -> None:
    if future.done():  # the caller was cancelled meanwhile
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def private_database(path: Path, *, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """An SQLite file of the gateway's, made if missing (its directory 0700, the file
    0600), in WAL mode and autocommit (transactions are explicit), shared by every
    worker (the response store, the key store)."""
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    conn = sqlite3.connect(
        str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn


def _connect(path: Path) -> sqlite3.Connection:
    """The response store's database, with its table."""
    import sqlite_utils

    conn = private_database(path)
    db = sqlite_utils.Database(conn)
    table = db.table("responses")
    table.create(
        {"id": str, "tenant": str, "created_at": float, "expires_at": float, "body": bytes},
        pk=("tenant", "id"),
        not_null={"id", "tenant", "created_at", "expires_at", "body"},
        if_not_exists=True,
    )
    table.create_index(["expires_at"], if_not_exists=True)
    return conn


def open_store(settings: GatewaySettings) -> ResponseStore:
    """The store ``[plugin.gateway] responses_store`` names."""
    if settings.responses_store == "none":
        return NoStore()
    return SQLiteResponseStore(
        settings.responses_path or default_path(), max_bytes=8 * settings.max_body_bytes
    )


# ---------------------------------------------------------------------- messages as JSON


def messages_json(messages: Iterable[Message]) -> list[dict[str, Any]]:
    """Kernel messages as plain JSON values (every field, parts tagged by type)."""
    out = []
    for message in messages:
        item: dict[str, Any] = {
            "role": message.role,
            "content": [_part_json(p) for p in message.content],
        }
        if message.tool_calls:
            item["tool_calls"] = [
                {k: v for k, v in attrs.asdict(call).items() if v is not None}
                for call in message.tool_calls
            ]
        if message.tool_call_id is not None:
            item["tool_call_id"] = message.tool_call_id
        if message.name is not None:
            item["name"] = message.name
        out.append(item)
    return out


def _part_json(part: Part) -> dict[str, Any]:
    return {k: v for k, v in attrs.asdict(part).items() if v is not None}


_PARTS: dict[str, type[TextPart] | type[ImagePart] | type[ReasoningPart]] = {
    "text": TextPart,
    "image": ImagePart,
    "reasoning": ReasoningPart,
}


def messages_from_json(items: Iterable[Mapping[str, Any]]) -> tuple[Message, ...]:
    """The inverse of :func:`messages_json`."""
    messages = []
    for item in items:
        parts: list[Part] = []
        for raw in item.get("content", ()):
            fields = {k: v for k, v in raw.items() if k != "type"}
            parts.append(_PARTS[raw["type"]](**fields))
        messages.append(
            Message(
                role=item["role"],
                content=tuple(parts),
                tool_calls=tuple(ToolCall(**call) for call in item.get("tool_calls", ())),
                tool_call_id=item.get("tool_call_id"),
                name=item.get("name"),
            )
        )
    return tuple(messages)


__all__ = [
    "NoStore",
    "ResponseStore",
    "SQLiteResponseStore",
    "StoredResponse",
    "default_path",
    "messages_from_json",
    "messages_json",
    "open_store",
]
