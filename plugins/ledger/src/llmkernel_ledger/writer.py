"""The ledger's writer: a thread and a queue, so recording never blocks the loop.

``offer(row)`` is a non-blocking ``put``; the thread drains the queue in batches,
each batch one transaction. ``flush()`` waits until everything offered so far is
committed; ``close()`` flushes and stops the thread (``Kernel.aclose`` calls it).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from llmkernel import log

if TYPE_CHECKING:
    from llmkernel_ledger.store import LedgerRow, LedgerStore

__all__ = ["LedgerWriter"]

BATCH = 500


class _Flush:
    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()


class LedgerWriter:
    def __init__(self, store: LedgerStore, *, batch: int = BATCH) -> None:
        self.store = store
        self.batch = batch
        self.queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.written = 0
        self.failed = 0
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False

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

    def offer(self, row: LedgerRow) -> None:
        """Queue ``row`` for writing; never blocks."""
        if self._closed:
            log.warning("llmkernel.ledger.closed", request_id=row.request_id)
            return
        self._ensure_started()
        self.queue.put(row)

    def submit(self, task: Callable[[], object]) -> None:
        """Run ``task`` on the writer thread, in order with the rows offered around
        it (budgets settle reservations this way); never blocks."""
        if self._closed:
            task()
            return
        self._ensure_started()
        self.queue.put(task)

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every row offered before this call is committed."""
        if self._thread is None:
            return True
        marker = _Flush()
        self.queue.put(marker)
        return marker.done.wait(timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Flush, then stop the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread is None:
            return
        self.queue.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        from llmkernel_ledger.store import LedgerRow

        stop = False
        while not stop:
            items = [self.queue.get()]
            while len(items) < self.batch:
                try:
                    items.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            rows: list[LedgerRow] = []
            for item in items:
                if isinstance(item, LedgerRow):
                    rows.append(item)
                    continue
                if rows:
                    self._write(rows)
                    rows = []
                if isinstance(item, _Flush):
                    item.done.set()
                elif item is _STOP:
                    stop = True
                elif callable(item):
                    self._run_task(item)
            if rows:
                self._write(rows)

    def _run_task(self, task: Callable[[], object]) -> None:
        try:
            task()
        except Exception as exc:
            log.error("llmkernel.ledger.task_failed", error=f"{type(exc).__name__}: {exc}")

    def _write(self, rows: list[LedgerRow]) -> None:
        try:
            self.written += self.store.write(rows)
        except Exception as exc:  # a full disk or a locked file must not kill the thread
            self.failed += len(rows)
            log.error(
                "llmkernel.ledger.write_failed",
                rows=len(rows),
                error=f"{type(exc).__name__}: {exc}",
            )
