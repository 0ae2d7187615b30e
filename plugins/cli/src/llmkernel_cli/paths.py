"""Where the CLI keeps its files, and how it makes them: private to the user
(directories 0700, files 0600), SQLite in WAL mode."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite_utils

__all__ = ["config_dir", "connect", "data_dir", "private_file", "write_private"]

BUSY_TIMEOUT_MS = 30_000


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/llmkernel`` (``~/.config/llmkernel``), as the config's search."""
    from llmkernel.config import user_config_dir

    return user_config_dir(os.environ)


def data_dir() -> Path:
    """``$XDG_DATA_HOME/llmkernel`` (``~/.local/share/llmkernel``), beside the ledger."""
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "llmkernel"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "llmkernel"


def private_file(path: Path) -> Path:
    """``path``, created empty if missing, readable by the user only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    return path


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` at once (a temporary file renamed over it),
    mode 0600 from the start: no moment where another user could read it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def connect(path: Path) -> sqlite_utils.Database:
    """The SQLite file at ``path`` (made 0600 if missing), WAL, autocommit with a
    busy timeout, so several processes can write it."""
    import sqlite3

    import sqlite_utils

    conn = sqlite3.connect(
        str(private_file(path)), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    return sqlite_utils.Database(conn)
