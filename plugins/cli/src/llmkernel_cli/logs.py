"""The conversation log: every prompt the CLI sends and its answer, in SQLite.

``$XDG_DATA_HOME/llmkernel/logs.db`` (0600, WAL): ``conversations``, ``responses``
(prompt, system prompt, answer, model, usage, cost, latency, attempts) with a
full-text index over prompts and answers, and ``attachments`` (each file once, by
its SHA-256) so a continued conversation sends them again. Only the CLI writes it;
the library stores no content. ``logs-off`` in the user config directory turns it
off, as in ``llm``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmkernel_cli.paths import config_dir, connect, data_dir

if TYPE_CHECKING:
    import sqlite_utils

    from llmkernel.types import Response
    from llmkernel_cli.attachments import Attachment

__all__ = ["LogStore", "logging_on", "logs_path", "new_id", "off_marker"]

_SCHEMA = (
    """CREATE TABLE conversations (
        id TEXT PRIMARY KEY, name TEXT, model TEXT, created REAL NOT NULL)""",
    """CREATE TABLE responses (
        id TEXT PRIMARY KEY,
        conversation_id TEXT NOT NULL REFERENCES conversations(id),
        ts REAL NOT NULL,
        model TEXT NOT NULL,
        provider TEXT,
        resolved_model TEXT,
        prompt TEXT NOT NULL,
        system TEXT,
        response TEXT NOT NULL,
        options_json TEXT,
        attachments_json TEXT,
        finish_reason TEXT,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        cached_input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        reasoning_tokens INTEGER NOT NULL DEFAULT 0,
        cost TEXT,
        latency REAL,
        attempts INTEGER NOT NULL DEFAULT 1,
        cached INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX responses_conversation ON responses (conversation_id, ts)",
    "CREATE INDEX responses_ts ON responses (ts)",
    """CREATE TABLE attachments (
        id TEXT PRIMARY KEY, media_type TEXT NOT NULL, source TEXT, content BLOB NOT NULL)""",
)
_VERSION = 1
_COLUMNS = (
    "id, conversation_id, ts, model, provider, resolved_model, prompt, system, response, "
    "options_json, attachments_json, finish_reason, input_tokens, cached_input_tokens, "
    "output_tokens, reasoning_tokens, cost, latency, attempts, cached"
)


def logs_path() -> Path:
    return data_dir() / "logs.db"


def off_marker() -> Path:
    """Present when logging is off (``llmkernel logs off``)."""
    return config_dir() / "logs-off"


def logging_on() -> bool:
    return not off_marker().exists()


def new_id() -> str:
    """A unique id that sorts by time: milliseconds, then random hex."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(5)}"


class LogStore:
    """The log database, made and migrated on first open."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or logs_path()
        self.db: sqlite_utils.Database = connect(self.path)
        self._migrate()

    def _migrate(self) -> None:
        with self._transaction() as conn:
            if conn.execute("PRAGMA user_version").fetchone()[0] >= _VERSION:
                return
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {_VERSION}")
        self.db.table("responses").enable_fts(["prompt", "response"], create_triggers=True)

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ writing

    def record(
        self,
        *,
        conversation: str | None,
        model: str,
        prompt: str,
        system: str | None,
        response: Response,
        options: Mapping[str, Any],
        attachments: Sequence[Attachment] = (),
    ) -> tuple[str, str]:
        """Store one exchange (a new conversation when ``conversation`` is None), in
        one transaction; returns ``(response_id, conversation_id)``."""
        rid = new_id()
        usage = response.usage
        with self._transaction() as conn:
            if conversation is None:
                conversation = rid
                name = " ".join(prompt.split())[:60]
                conn.execute(
                    "INSERT INTO conversations (id, name, model, created) VALUES (?, ?, ?, ?)",
                    (conversation, name, model, time.time()),
                )
            for item in attachments:
                conn.execute(
                    "INSERT OR IGNORE INTO attachments (id, media_type, source, content) "
                    "VALUES (?, ?, ?, ?)",
                    (item.sha256, item.media_type, item.source, item.content),
                )
            conn.execute(
                f"INSERT INTO responses ({_COLUMNS}) VALUES ({', '.join('?' * 20)})",
                (
                    rid,
                    conversation,
                    time.time(),
                    model,
                    response.provider,
                    response.model,
                    prompt,
                    system,
                    response.text,
                    json.dumps(dict(options), default=str) if options else None,
                    json.dumps([a.sha256 for a in attachments]) if attachments else None,
                    response.finish_reason,
                    usage.input_tokens,
                    usage.cached_input_tokens,
                    usage.output_tokens,
                    usage.reasoning_tokens,
                    None if response.cost is None else format(response.cost, "f"),
                    response.latency,
                    response.attempts,
                    int(response.cached),
                ),
            )
        return rid, conversation

    # ------------------------------------------------------------------ reading

    def last_conversation(self) -> str | None:
        row = self.db.execute(
            "SELECT conversation_id FROM responses ORDER BY ts DESC, id DESC LIMIT 1"
        ).fetchone()
        return None if row is None else str(row[0])

    def conversation_model(self, cid: str) -> str | None:
        row = self.db.execute("SELECT model FROM conversations WHERE id = ?", [cid]).fetchone()
        return None if row is None else str(row[0])

    def turns(self, cid: str) -> list[dict[str, Any]]:
        """The exchanges of conversation ``cid`` in order, each with its attachments."""
        rows = self.entries(cid=cid, limit=0)
        for row in rows:
            ids = json.loads(row["attachments_json"] or "[]")
            row["attachments"] = [self.attachment(i) for i in ids]
        return rows

    def attachment(self, sha256: str) -> Attachment:
        from llmkernel_cli.attachments import Attachment

        row = self.db.execute(
            "SELECT media_type, source, content FROM attachments WHERE id = ?", [sha256]
        ).fetchone()
        return Attachment(media_type=row[0], source=row[1], content=row[2])

    def entries(
        self,
        *,
        limit: int = 3,
        model: str | None = None,
        query: str | None = None,
        cid: str | None = None,
    ) -> list[dict[str, Any]]:
        """Logged exchanges, oldest first: the last ``limit`` (0: all), of ``model``
        (as asked, or ``provider/model``), matching ``query`` (full-text, the best
        match last), of conversation ``cid``."""
        where: list[str] = []
        params: list[Any] = []
        join, order = "", "r.ts DESC, r.id DESC"
        if query:
            join = "JOIN responses_fts ON responses_fts.rowid = r.rowid"
            where.append("responses_fts MATCH ?")
            params.append(self.db.quote_fts(query))
            order = "responses_fts.rank"
        if model:
            where.append("(r.model = ? OR r.provider || '/' || r.resolved_model = ?)")
            params += [model, model]
        if cid:
            where.append("r.conversation_id = ?")
            params.append(cid)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        columns = ", ".join(f"r.{c.strip()}" for c in _COLUMNS.split(","))
        sql = f"SELECT {columns} FROM responses r {join} {clause} ORDER BY {order}"
        if limit:
            sql += f" LIMIT {int(limit)}"
        cursor = self.db.execute(sql, params)
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
        rows.reverse()  # the newest (or best match) last, where a terminal's reader looks
        for row in rows:
            row["cost"] = None if row["cost"] is None else Decimal(row["cost"])
        return rows

    def counts(self) -> tuple[int, int]:
        """``(conversations, responses)``."""
        conversations = self.db.execute("SELECT count(*) FROM conversations").fetchone()[0]
        responses = self.db.execute("SELECT count(*) FROM responses").fetchone()[0]
        return int(conversations), int(responses)
