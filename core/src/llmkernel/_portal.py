"""Running the async implementation from sync code, on one event loop per kernel, so
HTTP connections pooled on that loop are reused across calls.

A sync call runs the kernel's loop **in the calling thread** when nobody else is
running it (the common case: no thread hop, no wake-up of another thread). A call
made while another thread runs the loop, or from a thread that runs an event loop of
its own, is handed to the loop (``call_soon_threadsafe``) and waits; a daemon thread
takes over running the loop when the thread that ran it returns while handed-over
calls or other tasks (a plugin's background task, such as health checks) are still
pending, and gives it back once nothing is left.

Between sync calls the loop does not run unless such tasks exist: work posted to it
meanwhile (a stream dropped without ``close()`` is finalized this way) runs at the
next call, or at :meth:`Portal.stop` (``Kernel.close``, or interpreter exit).

What the portal guarantees to a sync caller:

- Ctrl-C (in the main thread) cancels the call's coroutine, lets it unwind (so the
  upstream connection is closed), then raises ``KeyboardInterrupt``; a second Ctrl-C
  stops waiting. Any other exception raised into the calling thread while it waits (a
  signal handler's, ``SystemExit``) does the same and propagates.
- :meth:`Portal.stop` from another thread makes every call still running fail with a
  clear :class:`~llmkernel.errors.LLMKernelError` instead of blocking forever.
- Stopping cancels and awaits pending tasks, closes async generators and the default
  executor before closing the loop, so nothing is left to print "Task was destroyed
  but it is pending!". Portals still open at interpreter exit are stopped too.
- A child process made by ``os.fork`` starts with a fresh loop (the parent's is not
  usable there). The kernel drops its own state bound to the parent's loop (pooled
  connections) through its own fork hook (``kernel.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["CLOSED_MESSAGE", "Portal"]

T = TypeVar("T")

#: the error a call gets when the portal stops under it
CLOSED_MESSAGE = "the kernel was closed (Kernel.close) while this call was running"

# Seconds a cancelled call gets to unwind (close its connection) before the caller's
# exception propagates, and that stop() gives pending tasks before cancelling them.
_GRACE = 5.0
# Seconds the daemon thread keeps the loop after the last handed-over call, for the next.
_LINGER = 0.2
# Seconds of idleness after which a call first lets the loop read what arrived
# meanwhile (a pooled connection the server closed is then known closed, not reused).
_STALE = 1.0

_ABANDONED: list[asyncio.AbstractEventLoop] = []  # a parent's loops, kept from gc in a child


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """The loop running in this thread, or ``None`` (asyncio's public API)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


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
    """One sync call: its task on the loop, and how it ended."""

    __slots__ = ("cancelled", "closed", "done", "error", "interrupted", "result", "task")

    def __init__(self) -> None:
        self.done = _Done()
        self.task: asyncio.Task[Any] | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.closed = False  # stop() came
        self.cancelled = False  # the caller went away (Ctrl-C) before it started
        self.interrupted = False  # Ctrl-C while the caller ran the loop

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


class _Loop:
    """One event loop of a portal and who runs it."""

    __slots__ = (
        "calls",
        "detached",
        "driver",
        "idle_since",
        "loop",
        "released",
        "wake",
        "watch",
    )

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.driver: threading.Thread | None = None  # the thread running the loop now
        self.calls: set[_Call] = set()
        self.wake: asyncio.Future[None] | None = None  # the daemon waits on it for work
        self.watch: asyncio.Task[Any] | None = None  # the daemon's own task
        self.idle_since = self.loop.time()
        self.detached = False  # stop() took it: close it once nobody runs it
        self.released = threading.Event()  # set when a detached loop is let go

    def busy(self, me: asyncio.Task[Any] | None = None, own: _Call | None = None) -> bool:
        """Calls other than ``own`` not finished (handed over and not started, or
        whose task ended but whose done callback still waits in the loop's queue), or
        tasks other than ``me`` pending."""
        # tuple(): one step under the GIL, so another thread adding a call cannot
        # change the set while it is read
        if any(c is not own and not c.done.is_set() for c in tuple(self.calls)):
            return True
        return any(t is not me for t in asyncio.all_tasks(self.loop))

    def let_go(self) -> None:
        """Nobody runs the loop now (call with the portal's lock held)."""
        self.driver = None
        self.idle_since = self.loop.time()
        if self.detached:
            self.released.set()

    def poke(self) -> None:
        """On the loop: new work for the daemon."""
        wake = self.wake
        if wake is not None and not wake.done():
            wake.set_result(None)


def _closed_error() -> BaseException:
    from llmkernel.errors import LLMKernelError

    return LLMKernelError(CLOSED_MESSAGE)


def _cancelled_error() -> BaseException:
    from llmkernel.errors import LLMKernelError

    return LLMKernelError("the call was cancelled on the kernel's event loop")


def _own_loop_error() -> BaseException:
    from llmkernel.errors import LLMKernelError

    return LLMKernelError(
        "a sync kernel method was called from the kernel's own event loop "
        "(inside an async callback): await the async method instead"
    )


class Portal:
    """The kernel's event loop for sync callers, created on first use."""

    def __init__(self) -> None:
        self._state: _Loop | None = None
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self._state is not None

    @property
    def _calls(self) -> set[_Call]:
        state = self._state
        return set() if state is None else state.calls

    def call(self, coro: Coroutine[Any, Any, T], state: _Loop | None = None) -> T:
        """Run ``coro`` on the portal's loop (or the detached loop ``state`` that
        :meth:`stop` finishes) and wait for its result: in this thread when nobody
        runs the loop (written out here, one frame: the common case), else handed to
        the thread that does."""
        if state is None:
            with self._lock:
                state = self._state
                if state is None:
                    state = self._state = _Loop()
        running = _running_loop()
        if running is state.loop:
            coro.close()
            raise _own_loop_error()
        call = _Call()
        with self._lock:
            state.calls.add(call)
            drive = state.driver is None and running is None
            if drive:
                state.driver = threading.current_thread()
            elif state.driver is None:  # this thread runs a loop of its own
                self._start_daemon(state)
        try:
            if not drive:
                self._hand_over(state, call, coro)
            else:
                loop = state.loop
                if loop.time() - state.idle_since > _STALE:
                    coro = _after_pending_io(coro)
                try:
                    task = call.task = loop.create_task(coro)
                except BaseException:
                    coro.close()
                    self._let_go(state, call)
                    raise
                sigint = _catch_sigint(loop, call, task)
                try:
                    try:
                        loop.run_until_complete(task)
                    except BaseException as exc:
                        if not _raised_by(task, exc):  # raised into this thread: a signal
                            if not task.done():  # handler's exception, a second Ctrl-C
                                call.cancelled = True
                                task.cancel()
                                _unwind(loop, task)
                            raise
                finally:
                    if sigint is not None and signal.getsignal(signal.SIGINT) is sigint:
                        signal.signal(signal.SIGINT, signal.default_int_handler)
                    self._let_go(state, call)
                if task.cancelled() and call.interrupted:
                    raise KeyboardInterrupt
                call.finish(task)
        finally:
            with self._lock:
                state.calls.discard(call)
        if call.error is not None:
            error, call.error = call.error, None  # no reference cycle through the frame
            raise error
        return call.result  # type: ignore[no-any-return]

    def _let_go(self, state: _Loop, own: _Call) -> None:
        """The driving thread returns: the daemon takes the loop if work is left."""
        with self._lock:
            if state.busy(own=own):
                self._start_daemon(state)
            else:
                state.let_go()

    # --------------------------------------------------- another thread runs the loop

    def _hand_over(self, state: _Loop, call: _Call, coro: Coroutine[Any, Any, Any]) -> None:
        loop = state.loop

        def begin() -> None:
            if call.closed or call.cancelled:  # stop() or the caller's Ctrl-C came first
                coro.close()
                call.abandon()
                return
            task = loop.create_task(coro)
            call.task = task
            task.add_done_callback(call.finish)
            state.poke()

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

    def _start_daemon(self, state: _Loop) -> None:
        """With ``self._lock`` held: a daemon thread runs the loop until it is idle."""
        thread = threading.Thread(
            target=self._serve, args=(state,), name="llmkernel-sync", daemon=True
        )
        state.driver = thread
        thread.start()

    def _serve(self, state: _Loop) -> None:
        loop = state.loop
        while True:
            try:
                loop.run_until_complete(_until_idle(state))
            except BaseException as exc:  # stop() cancels every task, this one too
                if not isinstance(exc, asyncio.CancelledError):
                    _report(exc)
            with self._lock:
                if state.busy() and not loop.is_closed():
                    continue
                state.let_go()
                return

    # ------------------------------------------------------------------- stopping

    def stop(self, final: Callable[[], Awaitable[object]] | None = None) -> None:
        """Cancel calls still running (their callers get :data:`CLOSED_MESSAGE`),
        close async generators (streams left open), await ``final()`` on the loop
        (``Kernel.aclose``: close the HTTP clients last), finish pending tasks, then
        close the loop. The next :meth:`call` starts a new loop."""
        with self._lock:
            state = self._state
            if state is None:
                return
            if _running_loop() is state.loop:
                from llmkernel.errors import LLMKernelError

                raise LLMKernelError(
                    "Kernel.close() was called from the kernel's own event loop: "
                    "use `await kernel.aclose()` there"
                )
            self._state = None
            state.detached = True
            calls = list(state.calls)
            for call in calls:
                call.closed = True
        try:
            self.call(_shutdown(state, calls, final), state)
        except Exception as exc:
            _report(exc)
        finally:
            with self._lock:
                if state.driver is None:
                    state.released.set()
            if state.released.wait(_GRACE):
                state.loop.close()
            for call in calls:
                call.abandon()

    def forget(self) -> None:
        """In a forked child: the loop (and any thread running it) is the parent's."""
        if self._state is not None:
            _ABANDONED.append(self._state.loop)
        self._state = None
        self._lock = threading.Lock()


def _catch_sigint(
    loop: asyncio.AbstractEventLoop, call: _Call, task: asyncio.Task[Any]
) -> Callable[..., None] | None:
    """As ``asyncio.Runner`` does: in the main thread, the first Ctrl-C cancels the
    task (it unwinds, then ``KeyboardInterrupt`` is raised), a second one interrupts."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return None

    def on_sigint(signum: int, frame: object) -> None:
        if call.interrupted or task.done():
            raise KeyboardInterrupt
        call.interrupted = True
        task.cancel()
        loop.call_soon_threadsafe(lambda: None)  # wake the selector

    try:
        signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main interpreter
        return None
    return on_sigint


def _raised_by(task: asyncio.Task[Any], exc: BaseException) -> bool:
    """Whether ``exc``, out of ``run_until_complete(task)``, is the task's outcome."""
    if not task.done():
        return False
    if task.cancelled():
        return isinstance(exc, asyncio.CancelledError)
    return task.exception() is exc


def _unwind(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
    """Run the loop until the cancelled ``task`` has unwound, at most the grace
    period; a second interrupt stops waiting."""
    with contextlib.suppress(BaseException):
        loop.run_until_complete(asyncio.wait([task], timeout=_GRACE))
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" later


async def _after_pending_io(coro: Coroutine[Any, Any, T]) -> T:
    """Let the loop process what arrived while it was idle (two turns: the read, then
    ``connection_lost``), then run ``coro``."""
    try:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    except BaseException:
        coro.close()
        raise
    return await coro


async def _until_idle(state: _Loop) -> None:
    """The daemon's watch: return once no handed-over call and no other task is
    left, and none came for :data:`_LINGER` seconds."""
    loop = asyncio.get_running_loop()
    me = state.watch = asyncio.current_task()
    while True:
        state.wake = wake = loop.create_future()
        pending = [t for t in asyncio.all_tasks(loop) if t is not me]
        if pending:
            await asyncio.wait([*pending, wake], return_when=asyncio.FIRST_COMPLETED)
            continue
        if state.busy(me):  # a call handed over, its task not created yet
            await asyncio.wait([wake], timeout=_LINGER)
            continue
        await asyncio.wait([wake], timeout=_LINGER)
        if not wake.done():
            return


async def _shutdown(
    state: _Loop, calls: list[_Call], final: Callable[[], Awaitable[object]] | None
) -> None:
    """What ``asyncio.run`` does at its end: the calls still running are cancelled
    and given a grace period to unwind; open async generators are closed; ``final``
    runs; what is still pending is cancelled."""
    loop = asyncio.get_running_loop()
    for call in calls:
        if call.task is not None:
            call.task.cancel()
    await _settle(state, cancel=False)
    await loop.shutdown_asyncgens()
    if final is not None:
        try:
            await final()
        except Exception as exc:
            _report(exc)
    await _settle(state, cancel=False)
    await _settle(state, cancel=True)
    await loop.shutdown_default_executor()


async def _settle(state: _Loop, *, cancel: bool) -> None:
    """Wait (at most the grace period) for every other task but the daemon's own
    watch (which ends by itself once nothing is left), cancelling them first when
    ``cancel``."""
    me = asyncio.current_task()
    pending = {t for t in asyncio.all_tasks(state.loop) if t is not me and t is not state.watch}
    if not pending:
        return
    if cancel:
        for task in pending:
            task.cancel()
    await asyncio.wait(pending, timeout=_GRACE)


def _report(exc: BaseException) -> None:
    from llmkernel._logging import log

    log.warning("llmkernel.portal.stop_failed", error=f"{type(exc).__name__}: {exc}")
