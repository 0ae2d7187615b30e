"""The ledger's writer: a thread and a queue, so recording never blocks the loop.

``offer(item)`` puts a row (or a finished call, whose row is built on the thread)
on a ``queue.SimpleQueue`` (C: an append, and a wake-up only when the thread
waits; the cheapest hand-over between threads measured here). The thread drains the
queue in batches, each batch one transaction (group commit): the rows and the SQL
tasks (``submit_sql``, budgets' settlements) of one drain commit together, in order,
so a burst costs one wake-up and one ``COMMIT``.

Durable (the default): ``offer(item, wait=True)`` commits the row before it
returns when the writer is idle: in the calling thread, in one transaction with
what is queued (a budget's settlement of the same call), without waiting for any
lock (SQLite's busy timeout is 0 for that try), so an idle ledger costs a call one
``COMMIT`` and no thread round trip. When the writer is busy (the thread is
committing, another process holds the file's lock, rows are held after a failure)
or that try fails, it returns a :class:`Durable`, an awaitable that completes once
the thread has committed the transaction holding the row; the kernel awaits it
before the caller gets the answer. Callers that offer while a transaction is being
written share the next one (no linger needed). Either way the row is in the file
(WAL) before the caller has its answer. Fast (``wait=False``): the caller does not
wait; a woken thread lingers ``linger`` seconds so a burst gathers.

A write that fails on the file (unwritable, full, locked, I/O) is retried with
stamina for ``write_timeout`` seconds; then the calls waiting for it fail with a
:class:`~llmkernel_ledger.errors.LedgerError` naming the file, and its rows and tasks
are held in memory, in order (at most ``buffer`` rows: past it the oldest are
dropped, with an error log saying how many), and written, before anything newer,
as soon as the file takes them again (tried every ``retry_every`` seconds). While
the file keeps failing each new batch is tried once, so waiting callers fail fast.
"""

from __future__ import annotations

import collections
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llmkernel import log
from llmkernel_ledger.errors import LedgerError, is_storage_error

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Generator

    from llmkernel_ledger.record import Finished
    from llmkernel_ledger.store import LedgerRow, LedgerStore, SqlTask

__all__ = ["BATCH", "BUFFER", "LINGER", "Durable", "Failed", "LedgerWriter"]

BATCH = 500
#: seconds the writer waits, once woken, for the rest of a burst (fast mode)
LINGER = 0.005
#: rows kept in memory at most while the file cannot be written
BUFFER = 100_000
#: seconds a failing write is retried before the calls waiting for it fail
WRITE_TIMEOUT = 5.0
#: seconds between two tries of the rows held after a failed write
RETRY_EVERY = 1.0


class Durable:
    """Awaitable: done when the row is committed; raises
    :class:`~llmkernel_ledger.errors.LedgerError` when it could not be. Nothing is
    logged if it is never awaited (a caller that went away)."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[LedgerError | None]) -> None:
        self.future = future

    def __await__(self) -> Generator[Any, None, None]:
        error = yield from self.future.__await__()
        if error is not None:
            raise error


class Failed:
    """Awaitable that raises ``error`` at once: a durable call that could not even be
    queued fails rather than returning without its row."""

    __slots__ = ("error",)

    def __init__(self, error: LedgerError) -> None:
        self.error = error

    def __await__(self) -> Generator[Any, None, None]:
        raise self.error
        yield  # a generator, so it is awaitable


class _Flush:
    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = True


class _Waiting:
    """An offered item whose caller awaits its commit."""

    __slots__ = ("future", "item")

    def __init__(
        self, item: LedgerRow | Finished, future: asyncio.Future[LedgerError | None]
    ) -> None:
        self.item = item
        self.future = future


class _Sql:
    __slots__ = ("task",)

    def __init__(self, task: SqlTask) -> None:
        self.task = task


class _Collected:
    """Queued items taken off the queue, sorted and built, for one transaction:
    what an inline commit that could not be done hands back to the thread."""

    __slots__ = ("batch", "flushes", "stop", "waiting")

    def __init__(self) -> None:
        self.batch: list[LedgerRow | SqlTask] = []
        self.waiting: list[tuple[_Future, LedgerRow | None]] = []
        self.flushes: list[_Flush] = []
        self.stop = False


_STOP = object()
_Future = Any  # asyncio.Future[LedgerError | None], without importing asyncio here


class LedgerWriter:
    def __init__(
        self,
        store: LedgerStore,
        *,
        batch: int = BATCH,
        linger: float = LINGER,
        buffer: int = BUFFER,
        write_timeout: float = WRITE_TIMEOUT,
        retry_every: float = RETRY_EVERY,
    ) -> None:
        self.store = store
        self.batch = batch
        self.linger = linger
        self.buffer = buffer
        self.write_timeout = write_timeout
        self.retry_every = retry_every
        self.items: queue.SimpleQueue[object] = queue.SimpleQueue()
        #: rows and SQL tasks of failed writes, in order, written before anything new
        self.held: collections.deque[LedgerRow | SqlTask] = collections.deque()
        self.held_rows = 0
        self.written = 0
        #: rows that failed a write (held since, or dropped)
        self.failed = 0
        #: rows dropped: past ``buffer`` while held, unbuildable, or held at close
        self.dropped = 0
        #: the last write's error while the file keeps failing, else ``None``
        self.failing: LedgerError | None = None
        self._urgent = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        #: held while a batch is sorted and committed (by the thread, or inline)
        self._writing = threading.Lock()
        self._closed = False
        #: items of the last batch dropped while writing its items one by one
        self._isolated: set[int] = set()

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

    def _put(self, item: object) -> None:
        self.items.put(item)

    def offer(self, item: LedgerRow | Finished, *, wait: bool = False) -> Durable | Failed | None:
        """Queue a row, or a finished call (:class:`~llmkernel_ledger.record.Finished`,
        its row built on the writer thread); never blocks. With ``wait`` (on an event
        loop): ``None`` when the row is committed already (the writer was idle, see
        the module docstring), else the :class:`Durable` to await for its commit
        (:class:`Failed` when the row cannot be built). After :meth:`close` the row
        is written at once, in the calling thread."""
        if self._closed:
            self._write_now(item)
            return None
        if self._thread is None:
            self._ensure_started()
        if not wait:
            self._put(item)
            return None
        if self.failing is None and not self.held and self._writing.acquire(blocking=False):
            try:
                return self._commit_inline(item)
            finally:
                self._writing.release()
        import asyncio  # the caller runs on a loop: asyncio is imported already

        future: asyncio.Future[LedgerError | None] = asyncio.get_running_loop().create_future()
        self._put(_Waiting(item, future))
        return Durable(future)

    def _commit_inline(self, item: LedgerRow | Finished) -> Durable | Failed | None:
        """Commit ``item`` with everything queued, here, in one try that waits for
        no lock; when that cannot be done, the lot goes to the thread, in order,
        and the caller gets the :class:`Durable` of its commit there."""
        drained: list[object] = []
        get = self.items.get_nowait
        while True:
            try:
                drained.append(get())
            except queue.Empty:
                break
        collected = self._collect(drained)
        row = self._build(item)
        if row is not None:
            collected.batch.append(row)
        written: int | None = None
        if self.failing is None and not self.held:
            try:
                written = self.store.try_write_batch(collected.batch)
            except Exception:  # the thread retries it, holds it or isolates it, and logs
                written = None
        if written is None:
            import asyncio

            future: asyncio.Future[LedgerError | None] = asyncio.get_running_loop().create_future()
            collected.waiting.append((future, row))
            self._put(collected)
            return Durable(future)
        self.written += written
        if collected.waiting:
            _wake_waiters(
                [(f, None if r is not None else self._lost()) for f, r in collected.waiting]
            )
        for marker in collected.flushes:
            marker.done.set()
        if collected.stop:
            self._put(_STOP)
        return None if row is not None else Failed(self._lost())

    def _lost(self) -> LedgerError:
        return LedgerError(
            f"the call's ledger row could not be recorded in {self.store.path} "
            "(see llmkernel.ledger.record_failed)",
            path=self.store.path,
        )

    def submit_sql(self, task: SqlTask) -> None:
        """Run ``task(conn)`` on the writer thread INSIDE the transaction of the rows
        offered around it, in order with them (budgets settle reservations this way,
        so a call's settlement and row cost one commit); never blocks. A task that
        raises is rolled back alone (a savepoint) and logged."""
        if self._closed:
            self._write_now(task)
            return
        self._ensure_started()
        self._put(_Sql(task))

    def _write_now(self, item: LedgerRow | Finished | SqlTask) -> None:
        built = self._build(item) if not callable(item) else item
        if built is None:
            return
        try:
            self.store.write_batch([*self.held, built])
            self.held.clear()
            self.held_rows = 0
        except Exception as exc:
            log.error(
                "llmkernel.ledger.write_failed",
                path=str(self.store.path),
                rows=1,
                error=f"{type(exc).__name__}: {exc}",
                hint="the writer is closed: this row is lost",
            )

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every row offered before this call is committed (without the
        linger). False on timeout, or when rows are held because the file fails."""
        if self._thread is None or self._closed:  # close() flushed already
            return not self.held
        marker = _Flush()
        self._urgent = True
        self._put(marker)
        return marker.done.wait(timeout) and marker.ok

    def close(self, timeout: float | None = 30.0) -> None:
        """Flush, then stop the thread (one last try for rows held after failures;
        what still fails is logged as lost). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread is None:
            return
        self._urgent = True
        self._put(_STOP)
        self._thread.join(timeout)

    def after_fork(self) -> None:
        """In a forked child: a writer of its own (the parent's thread and queue stay
        the parent's, which commits them)."""
        self.items = queue.SimpleQueue()
        self.held = collections.deque()
        self.held_rows = 0
        self._urgent = False
        self._thread = None
        self._start_lock = threading.Lock()
        self._writing = threading.Lock()

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        items = self.items
        get, empty = items.get_nowait, queue.Empty
        stop = False
        while not stop:
            try:
                first = items.get(timeout=self.retry_every if self.held else None)
            except empty:
                with self._writing:
                    self._commit([], [], [])  # try the held rows again
                continue
            if self.linger > 0 and not self._urgent:
                time.sleep(self.linger)  # offers meanwhile join this batch
            self._urgent = False
            drained: list[object] = [first]
            while len(drained) < self.batch:
                try:
                    drained.append(get())
                except empty:
                    break
            with self._writing:
                stop = self._drain(drained)
        if self.held:
            log.error(
                "llmkernel.ledger.rows_lost",
                path=str(self.store.path),
                rows=self.held_rows,
                error=str(self.failing),
                hint="the writer closed while the file could not be written",
            )
            self.dropped += self.held_rows

    def _build(self, item: LedgerRow | Finished) -> LedgerRow | None:
        from llmkernel_ledger.store import LedgerRow

        if isinstance(item, LedgerRow):
            return item
        try:
            return item.row()
        except Exception as exc:
            self.dropped += 1
            log.error("llmkernel.ledger.record_failed", error=f"{type(exc).__name__}: {exc}")
            return None

    def _drain(self, items: list[object]) -> bool:
        """Commit ``items``: rows and SQL tasks in one transaction, then wake their
        waiters and flush markers. True at the stop."""
        collected = self._collect(items)
        self._commit(collected.batch, collected.waiting, collected.flushes)
        return collected.stop

    def _collect(self, items: list[object]) -> _Collected:
        """``items`` sorted out: the rows (built) and SQL tasks of one transaction,
        in order, the callers waiting for it, the flush markers, the stop."""
        out = _Collected()
        batch, waiting = out.batch, out.waiting
        for item in items:
            if isinstance(item, _Sql):
                batch.append(item.task)
            elif isinstance(item, _Waiting):
                row = self._build(item.item)
                waiting.append((item.future, row))
                if row is not None:
                    batch.append(row)
            elif isinstance(item, _Collected):
                batch.extend(item.batch)
                waiting.extend(item.waiting)
                out.flushes.extend(item.flushes)
                out.stop = out.stop or item.stop
            elif isinstance(item, _Flush):
                out.flushes.append(item)
            elif item is _STOP:
                out.stop = True
            else:
                row = self._build(item)  # type: ignore[arg-type]
                if row is not None:
                    batch.append(row)
        return out

    def _commit(
        self,
        batch: list[LedgerRow | SqlTask],
        waiting: list[tuple[_Future, LedgerRow | None]],
        flushes: list[_Flush],
    ) -> None:
        error: LedgerError | None = None
        self._isolated.clear()
        if batch or self.held:
            error = self._write([*self.held, *batch] if self.held else batch)
        if error is not None:
            if not self._isolated:  # (an isolated batch held its own rest)
                self._hold(batch)
        elif self.held:
            self.held.clear()
            self.held_rows = 0
        if waiting:
            lost = self._lost()
            _wake_waiters(
                [
                    (f, lost if row is None or id(row) in self._isolated else error)
                    for f, row in waiting
                ]
            )
        for marker in flushes:
            marker.ok = error is None
            marker.done.set()

    def _write(self, batch: list[LedgerRow | SqlTask]) -> LedgerError | None:
        """Write ``batch`` (retried while the file fails, unless it was failing
        already); the error that made it give up, or ``None``."""
        rows = _rows(batch)
        try:
            try:
                self.written += self.store.write_batch(batch)
            except sqlite3.OperationalError:
                if self.failing is not None or self.write_timeout <= 0:
                    raise
                self._retry(batch)  # the first try bare: a success never pays for stamina
        except Exception as exc:
            if not is_storage_error(exc):
                return self._isolate(batch, exc)
            error = LedgerError(
                f"the ledger could not write {self.store.path}: {type(exc).__name__}: {exc}",
                path=self.store.path,
            )
            if self.failing is None:
                log.error(
                    "llmkernel.ledger.write_failed",
                    path=str(self.store.path),
                    rows=rows,
                    error=f"{type(exc).__name__}: {exc}",
                    hint="rows are kept in memory and written when the file takes them",
                )
            self.failed += rows - self.held_rows
            self.failing = error
            return error
        if self.failing is not None:
            log.warning("llmkernel.ledger.write_recovered", path=str(self.store.path), rows=rows)
            self.failing = None
        return None

    def _retry(self, batch: list[LedgerRow | SqlTask]) -> None:
        import stamina

        for attempt in stamina.retry_context(
            on=_transient,
            attempts=None,
            timeout=self.write_timeout,
            wait_initial=0.02,
            wait_max=0.5,
            wait_jitter=0.05,
        ):
            with attempt:
                self.written += self.store.write_batch(batch)

    def _isolate(self, batch: list[LedgerRow | SqlTask], exc: Exception) -> LedgerError | None:
        """A batch failed for something in it (not the file): write its items one by
        one, dropping (and logging) the ones that fail (their ids in ``_isolated``)."""
        log.error(
            "llmkernel.ledger.batch_failed",
            rows=_rows(batch),
            error=f"{type(exc).__name__}: {exc}",
            hint="writing its rows one by one",
        )
        self._isolated.add(-1)  # marks the batch as isolated, even if nothing is dropped
        self.held.clear()
        self.held_rows = 0
        for index, item in enumerate(batch):
            try:
                self.written += self.store.write_batch([item])
            except Exception as one:
                if is_storage_error(one):  # the file now: hold the rest
                    self._hold(batch[index:])
                    self.failing = LedgerError(
                        f"the ledger could not write {self.store.path}: {one}",
                        path=self.store.path,
                    )
                    return self.failing
                self._isolated.add(id(item))
                self.dropped += _rows([item])
                log.error("llmkernel.ledger.record_failed", error=f"{type(one).__name__}: {one}")
        return None

    def _hold(self, batch: Sequence[LedgerRow | SqlTask]) -> None:
        from llmkernel_ledger.store import LedgerRow

        held = self.held
        held.extend(batch)
        self.held_rows += _rows(batch)
        if self.held_rows <= self.buffer:
            return
        dropped = 0
        while self.held_rows > self.buffer and held:
            if isinstance(held.popleft(), LedgerRow):
                self.held_rows -= 1
                dropped += 1
        self.dropped += dropped
        log.error(
            "llmkernel.ledger.rows_dropped",
            path=str(self.store.path),
            rows=dropped,
            buffer=self.buffer,
            error=str(self.failing),
            hint="the file has not taken rows for a while; raise [plugin.ledger] buffer",
        )


def _rows(batch: Sequence[object]) -> int:
    from llmkernel_ledger.store import LedgerRow

    return sum(1 for item in batch if isinstance(item, LedgerRow))


def _transient(exc: Exception) -> bool:
    return isinstance(exc, sqlite3.OperationalError)


def _wake_waiters(results: list[tuple[_Future, LedgerError | None]]) -> None:
    """Resolve each future on its own loop: one ``call_soon_threadsafe`` per loop."""
    by_loop: dict[Any, list[tuple[_Future, LedgerError | None]]] = {}
    for pair in results:
        by_loop.setdefault(pair[0].get_loop(), []).append(pair)
    for loop, group in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
            loop.call_soon_threadsafe(_resolve, group)


def _resolve(results: list[tuple[_Future, LedgerError | None]]) -> None:
    for future, error in results:
        if not future.done():
            future.set_result(None if error is None else error.copy())
