"""Provider batches that outlive the process: one row per submitted batch in a
SQLite table (``provider_batches``), in the ledger's database when the ledger is
enabled, else ``$XDG_DATA_HOME/llmkernel/batch.db``; ``[plugin.batch] path`` wins.
WAL mode, a busy timeout, short transactions: safe with several processes."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    import sqlite_utils

    from llmkernel.kernel import Kernel

__all__ = ["BatchJob", "JobStore", "default_path", "store_path"]

TABLE = "provider_batches"


def default_path() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "llmkernel" / "batch.db")


def store_path(kernel: Kernel) -> str:
    """Where the kernel's batches are kept (see the module docstring)."""
    from llmkernel_batch.plugin import settings_for

    configured = settings_for(kernel).get("path")
    if configured:
        return str(configured)
    try:
        from llmkernel_ledger.plugin import ledger_for
    except ImportError:
        return default_path()
    try:
        return str(ledger_for(kernel).settings.path)
    except Exception:
        return default_path()


@attrs.frozen(kw_only=True)
class BatchJob:
    """A submitted provider batch: its id at the provider, where it runs, the
    ``custom_ids`` in the order sent, its last known ``status`` and details."""

    id: str
    provider: str
    provider_type: str
    model: str
    status: str
    custom_ids: tuple[str, ...]
    created: float
    updated: float
    info: Mapping[str, Any] = attrs.field(factory=dict)
    collected: bool = False


class JobStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: sqlite_utils.Database | None = None

    @property
    def db(self) -> sqlite_utils.Database:
        if self._db is None:
            import sqlite3

            import sqlite_utils

            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {TABLE} (
                    id TEXT PRIMARY KEY,
                    provider TEXT NOT NULL,
                    provider_type TEXT NOT NULL,
                    model TEXT NOT NULL,
                    status TEXT NOT NULL,
                    custom_ids TEXT NOT NULL,
                    created REAL NOT NULL,
                    updated REAL NOT NULL,
                    info TEXT NOT NULL DEFAULT '{{}}',
                    collected INTEGER NOT NULL DEFAULT 0
                )"""
            )
            self._db = sqlite_utils.Database(conn)
        return self._db

    def add(
        self,
        *,
        id: str,
        provider: str,
        provider_type: str,
        model: str,
        status: str,
        custom_ids: Sequence[str],
        info: Mapping[str, Any],
    ) -> BatchJob:
        now = time.time()
        self.db[TABLE].insert(  # type: ignore[union-attr]
            {
                "id": id,
                "provider": provider,
                "provider_type": provider_type,
                "model": model,
                "status": status,
                "custom_ids": json.dumps(list(custom_ids)),
                "created": now,
                "updated": now,
                "info": json.dumps(info),
                "collected": 0,
            },
            replace=True,
        )
        return self.get(id)

    def update(
        self,
        id: str,
        *,
        status: str | None = None,
        info: Mapping[str, Any] | None = None,
        collected: bool | None = None,
    ) -> BatchJob:
        values: dict[str, Any] = {"updated": time.time()}
        if status is not None:
            values["status"] = status
        if info is not None:
            values["info"] = json.dumps(info)
        if collected is not None:
            values["collected"] = int(collected)
        self.db[TABLE].update(id, values)  # type: ignore[union-attr]
        return self.get(id)

    def get(self, id: str) -> BatchJob:
        from llmkernel.errors import ConfigError

        rows = list(self.db.query(f"SELECT * FROM {TABLE} WHERE id = ?", [id]))
        if not rows:
            raise ConfigError(f"no provider batch {id!r} is recorded in {self.path}")
        return _job(rows[0])

    def all(self) -> list[BatchJob]:
        return [_job(r) for r in self.db.query(f"SELECT * FROM {TABLE} ORDER BY created")]

    def close(self) -> None:
        if self._db is not None:
            self._db.conn.close()
            self._db = None


def _job(row: Mapping[str, Any]) -> BatchJob:
    return BatchJob(
        id=row["id"],
        provider=row["provider"],
        provider_type=row["provider_type"],
        model=row["model"],
        status=row["status"],
        custom_ids=tuple(json.loads(row["custom_ids"])),
        created=row["created"],
        updated=row["updated"],
        info=json.loads(row["info"] or "{}"),
        collected=bool(row["collected"]),
    )
