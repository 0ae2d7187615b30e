"""Running the async implementation from sync code: one event loop in a daemon
thread per kernel, so HTTP connections pooled on that loop are reused across calls
and sync calls work even inside a thread that already runs a loop.

What the portal guarantees to a sync caller:

- An exception raised in the calling thread while it waits (Ctrl-C's
  ``KeyboardInterrupt``, a signal handler's exception, ``SystemExit``) cancels the
  coroutine on the loop, waits a moment for it to unwind (so the upstream connection
  is closed), then propagates.
- :meth:`Portal.stop` from another thread makes every call still waiting fail with a
  clear :class:`~llmkernel.errors.LLMKernelError` instead of blocking forever.
- Stopping cancels and awaits pending tasks, closes async generators and the default
  executor before closing the loop, so nothing is left to print "Task was destroyed
  but it is pending!". Portals still running at interpreter exit are stopped too.
- A child process made by ``os.fork`` starts with a fresh portal (the parent's loop
  thread does not exist there); callbacks in :attr:`Portal.at_fork` run in the child
  so the owner can drop state bound to the parent's loop (pooled connections).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["CLOSED_MESSAGE", "Portal"]

T = TypeVar("T")

#: the error a call gets when the portal stops under it
CLOSED_MESSAGE = "the kernel was closed (Kernel.close) while this call was running"

# Seconds a cancelled call gets to unwind (close its connection) before the caller's
# exception propagates, and that stop() gives pending tasks before cancelling them.
_GRACE = 5.0

_PORTALS: weakref.WeakSet[Portal] = weakref.WeakSet()
_ABANDONED: list[asyncio.AbstractEventLoop] = []  # a parent's loops, kept from gc in a child


class _Done:
    """A one-shot event that Ctrl-C cannot break. ``threading.Event.wait`` can be
    interrupted while it holds its condition's lock, and a second wait (or the loop
    thread's ``set``) then deadlocks on it; a bare lock's ``acquire`` is atomic."""

    __slots__ = ("_flag", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._flag = False

    def set(self) -> None:
        if not self._flag:
            self._flag = True
            with contextlib.suppress(RuntimeError):  # set twice: already released
                self._lock.release()

    def is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: float | None = None) -> bool:
        if self._flag:
            return True
        if self._lock.acquire(timeout=-1 if timeout is None else timeout):
            self._lock.release()
        return self._flag


class _Call:
    """One sync call waiting for its task on the loop."""

    __slots__ = ("cancelled", "closed", "done", "error", "result", "task")

    def __init__(self) -> None:
        self.done = _Done()
        self.task: asyncio.Task[Any] | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.closed = False
        self.cancelled = False  # the caller went away (Ctrl-C) before it started

    def finish(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            self.error = _closed_error() if self.closed else _cancelled_error()
        else:
            self.error = task.exception()
            if self.error is None:
                self.result = task.result()
        self.done.set()

    def abandon(self) -> None:
        """The loop is gone: fail the call if it has not finished."""
        if not self.done.is_set():
            self.error = _closed_error()
            self.done.set()


def _closed_error() -> BaseException:
    from llmkernel.errors import LLMKernelError

    return LLMKernelError(CLOSED_MESSAGE)


def _cancelled_error() -> BaseException:
    from llmkernel.errors import LLMKernelError

    return LLMKernelError("the call was cancelled on the kernel's event loop")


class Portal:
    """A private event loop in a daemon thread, started on first use."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._calls: set[_Call] = set()
        #: called in a forked child, after the portal was reset
        self.at_fork: list[Callable[[], object]] = []
        _PORTALS.add(self)

    def _start(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        thread = threading.Thread(target=run, name="llmkernel-sync", daemon=True)
        thread.start()
        ready.wait()
        self._loop, self._thread = loop, thread
        return loop

    @property
    def started(self) -> bool:
        return self._loop is not None

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the portal's loop and wait for its result."""
        if self._thread is not None and threading.current_thread() is self._thread:
            coro.close()
            from llmkernel.errors import LLMKernelError

            raise LLMKernelError(
                "a sync kernel method was called from the kernel's own event loop "
                "(inside an async callback): await the async method instead"
            )
        call = _Call()
        with self._lock:
            loop = self._loop or self._start()
            self._calls.add(call)

        def begin() -> None:
            if call.closed or call.cancelled:  # stop() or the caller's Ctrl-C came first
                coro.close()
                call.abandon()
                return
            task = loop.create_task(coro)
            call.task = task
            task.add_done_callback(call.finish)

        try:
            try:
                loop.call_soon_threadsafe(begin)
            except RuntimeError:  # the loop closed between the lock and here
                coro.close()
                raise _closed_error() from None
            except BaseException:
                # Ctrl-C while handing the call over: queued or not, it must not run on
                self._cancel(call, loop, coro)
                raise
            try:
                call.done.wait()
            except BaseException:
                # Ctrl-C or any exception raised into this thread: stop the coroutine
                self._cancel(call, loop, coro)
                raise
        finally:
            with self._lock:
                self._calls.discard(call)
        if call.error is not None:
            error, call.error = call.error, None  # no reference cycle through the frame
            raise error
        return call.result  # type: ignore[no-any-return]

    def _cancel(
        self, call: _Call, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]
    ) -> None:
        call.cancelled = True

        def cancel() -> None:
            # runs after begin() if begin() was queued (FIFO): either the task exists,
            # or begin() saw ``cancelled`` and abandoned the call, or it never queued
            if call.task is not None:
                call.task.cancel()
            elif not call.done.is_set():
                coro.close()
                call.abandon()

        try:
            loop.call_soon_threadsafe(cancel)
        except RuntimeError:  # loop closed: nothing left to cancel
            return
        call.done.wait(_GRACE)  # let it unwind; a second Ctrl-C stops waiting

    def stop(self, final: Callable[[], Awaitable[object]] | None = None) -> None:
        """Cancel calls still running (their callers get :data:`CLOSED_MESSAGE`),
        close async generators (streams left open), await ``final()`` on the loop
        (``Kernel.aclose``: close the HTTP clients last), finish pending tasks, then
        stop and close the loop. The next :meth:`call` starts a new loop."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            if threading.current_thread() is thread:
                from llmkernel.errors import LLMKernelError

                raise LLMKernelError(
                    "Kernel.close() was called from the kernel's own event loop: "
                    "use `await kernel.aclose()` there"
                )
            self._loop = self._thread = None
            calls = list(self._calls)
            for call in calls:
                call.closed = True
        try:
            done = asyncio.run_coroutine_threadsafe(_shutdown(calls, final), loop)
            done.result(timeout=5 * _GRACE)
        except Exception as exc:
            _report(exc)
        finally:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=_GRACE)
            if not thread.is_alive():
                loop.close()
            for call in calls:
                call.abandon()

    def _forget(self) -> None:
        """In a forked child: the loop thread exists only in the parent."""
        if self._loop is not None:
            _ABANDONED.append(self._loop)
        self._loop = self._thread = None
        self._lock = threading.Lock()
        self._calls = set()
        for callback in self.at_fork:
            try:
                callback()
            except Exception as exc:
                _report(exc)


async def _shutdown(calls: list[_Call], final: Callable[[], Awaitable[object]] | None) -> None:
    """What ``asyncio.run`` does at its end, on a loop that runs in another thread:
    the calls still running are cancelled and given a grace period to unwind; open
    async generators are closed; ``final`` runs; what is still pending is cancelled."""
    loop = asyncio.get_running_loop()
    for call in calls:
        if call.task is not None:
            call.task.cancel()
    await _settle(loop, cancel=False)
    await loop.shutdown_asyncgens()
    if final is not None:
        try:
            await final()
        except Exception as exc:
            _report(exc)
    await _settle(loop, cancel=False)
    await _settle(loop, cancel=True)
    await loop.shutdown_default_executor()


async def _settle(loop: asyncio.AbstractEventLoop, *, cancel: bool) -> None:
    """Wait (at most the grace period) for every other task, cancelling them first
    when ``cancel``."""
    pending = {t for t in asyncio.all_tasks(loop) if t is not asyncio.current_task()}
    if not pending:
        return
    if cancel:
        for task in pending:
            task.cancel()
    await asyncio.wait(pending, timeout=_GRACE)


def _report(exc: BaseException) -> None:
    from llmkernel._logging import log

    log.warning("llmkernel.portal.stop_failed", error=f"{type(exc).__name__}: {exc}")


def _stop_all() -> None:
    for portal in list(_PORTALS):
        portal.stop()


def _after_fork_in_child() -> None:
    for portal in list(_PORTALS):
        portal._forget()


atexit.register(_stop_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
