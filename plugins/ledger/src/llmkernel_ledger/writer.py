"""The ledger's writer: a thread and a queue, so recording never blocks the loop.

``offer(row)`` appends to a deque and wakes the thread only when it is waiting;
woken, the thread lingers ``linger`` seconds so the rows of a burst gather, then
drains the queue in batches, each batch one transaction (group commit): the rows and
the SQL tasks (``submit_sql``, budgets' settlements) of one drain commit together,
in order, so a burst costs one wake-up and one ``COMMIT``. ``flush()`` waits (without
the linger) until everything offered so far is committed; ``close()`` flushes and
stops the thread (``Kernel.aclose`` calls it). What is committed is durable; a
process killed meanwhile loses only rows not yet committed, as before.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llmkernel import log

if TYPE_CHECKING:
    from llmkernel_ledger.store import LedgerRow, LedgerStore, SqlTask

__all__ = ["BATCH", "LINGER", "LedgerWriter"]

BATCH = 500
#: seconds the writer waits, once woken, for the rest of a burst
LINGER = 0.005


class _Flush:
    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()


class _Call:
    """A finished call, turned into its row on the writer thread (off the loop)."""

    __slots__ = ("ctx", "outcome")

    def __init__(self, ctx: Any, outcome: Any) -> None:
        self.ctx = ctx
        self.outcome = outcome


class _Sql:
    __slots__ = ("task",)

    def __init__(self, task: SqlTask) -> None:
        self.task = task


class LedgerWriter:
    def __init__(self, store: LedgerStore, *, batch: int = BATCH, linger: float = LINGER) -> None:
        self.store = store
        self.batch = batch
        self.linger = linger
        self.items: collections.deque[object] = collections.deque()
        self.written = 0
        self.failed = 0
        self._wake = threading.Event()
        self._urgent = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(
                    target=self._run, name="llmkernel-ledger-writer", daemon=True
                )
                thread.start()
                self._thread = thread
                _flush_at_exit(self)

    def _put(self, item: object) -> None:
        self.items.append(item)
        # safe without a lock: the thread clears the event BEFORE it drains
        if not self._wake.is_set():
            self._wake.set()

    def offer(self, row: LedgerRow) -> None:
        """Queue ``row`` for writing; never blocks."""
        if self._closed:
            log.warning("llmkernel.ledger.closed", request_id=row.request_id)
            return
        if self._thread is None:
            self._ensure_started()
        self._put(row)

    def offer_call(self, ctx: Any, outcome: Any) -> None:
        """Queue a finished call (the kernel's context and outcome); its row is built
        on the writer thread (:func:`~llmkernel_ledger.record.row_from`), so the
        caller pays an append. Never blocks."""
        if self._closed:
            log.warning("llmkernel.ledger.closed", request_id=str(ctx.id))
            return
        if self._thread is None:
            self._ensure_started()
        self._put(_Call(ctx, outcome))

    def submit(self, task: Callable[[], object]) -> None:
        """Run ``task`` on the writer thread, in order with the rows offered around
        it; never blocks."""
        if self._closed:
            task()
            return
        self._ensure_started()
        self._put(task)

    def submit_sql(self, task: SqlTask) -> None:
        """Run ``task(conn)`` on the writer thread INSIDE the transaction of the rows
        offered around it, in order with them (budgets settle reservations this way,
        so a call's settlement and row cost one commit); never blocks. A task that
        raises is rolled back alone (a savepoint) and logged."""
        if self._closed:
            self._run_sql_now(task)
            return
        self._ensure_started()
        self._put(_Sql(task))

    def _run_sql_now(self, task: SqlTask) -> None:
        try:
            self.store.write_batch([task])
        except Exception as exc:
            log.error("llmkernel.ledger.task_failed", error=f"{type(exc).__name__}: {exc}")

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every row offered before this call is committed."""
        if self._thread is None or self._closed:  # close() flushed already
            return True
        marker = _Flush()
        self._urgent = True
        self._put(marker)
        return marker.done.wait(timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Flush, then stop the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread is None:
            return
        self._urgent = True
        self._put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        items = self.items
        stop = False
        while not stop:
            self._wake.wait()
            self._wake.clear()
            if self.linger > 0 and not self._urgent:
                time.sleep(self.linger)  # offers meanwhile append without a wake-up
            self._urgent = False
            while items and not stop:
                drained: list[object] = []
                while items and len(drained) < self.batch:
                    drained.append(items.popleft())
                stop = self._drain(drained)

    def _drain(self, items: list[object]) -> bool:
        """Commit ``items`` (rows and SQL tasks in one transaction; a flush marker
        waits for it, a plain callable runs after it, in order). True at the stop."""
        from llmkernel_ledger.record import row_from
        from llmkernel_ledger.store import LedgerRow

        stop = False
        batch: list[LedgerRow | SqlTask] = []
        rows = 0
        flushes: list[_Flush] = []
        for item in items:
            if isinstance(item, _Call):
                try:
                    batch.append(row_from(item.ctx, item.outcome))
                except Exception as exc:
                    log.error(
                        "llmkernel.ledger.record_failed", error=f"{type(exc).__name__}: {exc}"
                    )
                    continue
                rows += 1
            elif isinstance(item, LedgerRow):
                batch.append(item)
                rows += 1
            elif isinstance(item, _Sql):
                batch.append(item.task)
            elif isinstance(item, _Flush):
                flushes.append(item)
            elif item is _STOP:
                stop = True
            elif callable(item):
                self._commit(batch, rows, flushes)
                batch, rows, flushes = [], 0, []
                self._run_task(item)
        self._commit(batch, rows, flushes)
        return stop

    def _commit(self, batch: list[LedgerRow | SqlTask], rows: int, flushes: list[_Flush]) -> None:
        if batch:
            self._write(batch, rows)
        for marker in flushes:
            marker.done.set()

    def _run_task(self, task: Callable[[], object]) -> None:
        try:
            task()
        except Exception as exc:
            log.error("llmkernel.ledger.task_failed", error=f"{type(exc).__name__}: {exc}")

    def _write(self, batch: list[LedgerRow | SqlTask], rows: int) -> None:
        try:
            self.written += self.store.write_batch(batch)
        except Exception as exc:  # a full disk or a locked file must not kill the thread
            self.failed += rows
            log.error(
                "llmkernel.ledger.write_failed",
                rows=rows,
                error=f"{type(exc).__name__}: {exc}",
            )


#: writers with a thread, flushed at interpreter exit (one hook for all of them)
_HOOKED = False
_LIVE: weakref.WeakSet[LedgerWriter] = weakref.WeakSet()


def _flush_at_exit(writer: LedgerWriter) -> None:
    """Commit what is queued when the interpreter exits, while the (daemon) writer
    thread still runs: ``threading``'s exit hooks run before daemon threads stop. A
    program that never closes its kernel loses no row it offered (the group commit
    waits ``linger`` seconds, longer than a short script's last calls)."""
    global _HOOKED
    if not _HOOKED:
        _HOOKED = True
        register = getattr(threading, "_register_atexit", None)
        if register is not None:
            with contextlib.suppress(RuntimeError):  # the interpreter is already exiting
                register(_flush_all)
    _LIVE.add(writer)


def _flush_all() -> None:
    for writer in list(_LIVE):
        if not writer.closed:
            writer.flush(timeout=10.0)
