"""The error of the ledger's (and the budgets') SQLite file, and where it is made."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from llmkernel.errors import LLMKernelError

__all__ = ["LedgerError", "is_storage_error", "sqlite_errors"]


class LedgerError(LLMKernelError):
    """The ledger's SQLite file could not be read or written (unwritable, full,
    locked, corrupt): ``path`` names it. In the default durable mode a call whose
    row cannot be committed fails with it; budgets raise it when they cannot
    reserve or settle."""

    def __init__(self, message: str, *, path: str | Path = "") -> None:
        super().__init__(message)
        self.path = str(path)

    def copy(self) -> LedgerError:
        """A fresh instance for each caller (a raised exception keeps its traceback)."""
        return LedgerError(str(self), path=self.path)


def is_storage_error(exc: BaseException) -> bool:
    """Whether ``exc`` is about the file or the disk (open, read-only, full, locked,
    I/O, corrupt) rather than about what was written: those are retried, and the
    rows kept until the file takes them."""
    return isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError


@contextlib.contextmanager
def sqlite_errors(path: str | Path, doing: str) -> Iterator[None]:
    """Turn an SQLite error about the file into a :class:`LedgerError` naming it and
    what was being done (``"reserve a budget"``)."""
    try:
        yield
    except sqlite3.Error as exc:
        if not is_storage_error(exc):
            raise
        raise LedgerError(
            f"could not {doing} in {path}: {type(exc).__name__}: {exc}", path=path
        ) from exc
