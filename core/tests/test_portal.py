"""The sync portal: cancellation from the calling thread, closing under a running
call, clean shutdown, and fork."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from llmkernel import Kernel
from llmkernel._portal import CLOSED_MESSAGE, Portal
from llmkernel.errors import LLMKernelError
from llmkernel.testing.scripted import Slow, make_kernel, scripted


class Interrupted(Exception):
    """What a signal handler raises into the calling thread (Ctrl-C's stand-in)."""


@pytest.fixture
def alarm() -> Iterator[None]:
    """SIGALRM raises :class:`Interrupted` in the main thread, as Ctrl-C would."""

    def handler(signum: int, frame: object) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_call_returns_the_result_and_raises_the_error() -> None:
    portal = Portal()

    async def ok() -> int:
        return 42

    async def bad() -> int:
        raise ValueError("from the loop")

    try:
        assert portal.call(ok()) == 42
        with pytest.raises(ValueError, match="from the loop"):
            portal.call(bad())
    finally:
        portal.stop()
    assert not portal.started


async def _slow(seen: list[str]) -> None:
    """Sleeps 30 s; records its cancellation, then its cleanup (which still awaits)."""
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        seen.append("cancelled")
        raise
    finally:
        await asyncio.sleep(0)  # cleanup that awaits still runs
        seen.append("cleaned up")


def test_an_exception_in_the_caller_cancels_the_coroutine(alarm: None) -> None:
    portal = Portal()
    seen: list[str] = []

    signal.setitimer(signal.ITIMER_REAL, 0.2)
    try:
        with pytest.raises(Interrupted):
            portal.call(_slow(seen))
        assert seen == ["cancelled", "cleaned up"]
        assert not portal.call(_pending())
    finally:
        portal.stop()


async def _pending() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


def test_closing_from_another_thread_fails_the_running_call_clearly() -> None:
    kernel = make_kernel([Slow(30, "late")])
    errors: list[BaseException] = []

    def chat() -> None:
        try:
            kernel.chat(model="a/m1", messages="hi")
        except BaseException as exc:
            errors.append(exc)

    caller = threading.Thread(target=chat)
    caller.start()
    _wait_for(lambda: bool(scripted(kernel, "a").requests))
    kernel.close()
    caller.join(10)
    assert not caller.is_alive(), "the call still blocks after close()"
    assert len(errors) == 1 and isinstance(errors[0], LLMKernelError)
    assert CLOSED_MESSAGE in str(errors[0])


def test_a_kernel_can_be_used_again_after_close() -> None:
    kernel = make_kernel(["one", "two"])
    assert kernel.chat(model="a/m1", messages="hi").text == "one"
    kernel.close()
    assert kernel.chat(model="a/m1", messages="hi").text == "two"
    kernel.close()


def test_a_sync_call_from_the_loop_thread_is_refused() -> None:
    portal = Portal()

    async def inner() -> int:
        return 1

    async def outer() -> int:
        coro = inner()
        return portal.call(coro)

    try:
        with pytest.raises(LLMKernelError, match="await the async method"):
            portal.call(outer())
    finally:
        portal.stop()


def test_stop_finishes_abandoned_async_generators() -> None:
    portal = Portal()
    closed: list[bool] = []

    async def numbers() -> object:
        try:
            for i in range(10):
                yield i
                await asyncio.sleep(0)
        finally:
            await asyncio.sleep(0)
            closed.append(True)

    agen = numbers()

    async def step() -> object:  # as ChatStream does: the generator runs on the loop
        return await anext(agen)  # type: ignore[call-overload]

    assert portal.call(step()) == 0
    portal.stop()
    assert closed == [True]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork with threads: we test it
def test_a_forked_child_gets_a_working_portal() -> None:
    portal = Portal()

    async def where() -> int:
        return os.getpid()

    assert portal.call(where()) == os.getpid()
    try:
        assert _in_child(lambda: portal.call(where()) == os.getpid())
    finally:
        portal.stop()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_forked_child_can_use_the_kernel() -> None:
    kernel = make_kernel(["hello", "hello"])
    assert kernel.chat(model="a/m1", messages="hi").text == "hello"
    try:
        assert _in_child(lambda: kernel.chat(model="a/m1", messages="hi").text == "hello")
    finally:
        kernel.close()


def _in_child(check: Callable[[], bool]) -> bool:
    """Fork; the child runs ``check`` and exits 0 when it holds (3 when it raised, 4
    when it was false); whether the child said so."""
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            code = 0 if check() else 4
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(_wait_child(pid)) == 0


def _wait_child(pid: int) -> int:
    for _ in range(300):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError("the forked child hung on its first call")


def test_interpreter_exit_with_an_open_kernel_prints_nothing(tmp_path: Path) -> None:
    """A kernel never closed, with a stream abandoned half-way: nothing is printed."""
    pytest.importorskip("llmkernel_mock")
    script = textwrap.dedent(
        """
        from llmkernel import Kernel
        kernel = Kernel.from_config({"default_model": "mock/chat"})
        stream = kernel.stream(messages="hi")
        next(iter(stream))
        del stream
        print("done")
        """
    )
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    assert "Task was destroyed" not in result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr


@pytest.mark.parametrize("how", ["chat", "stream"])
def test_an_interrupt_closes_the_upstream_connection(
    alarm: None, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """A sync chat or stream interrupted while the server holds its answer: the
    connection to the provider is closed before the exception reaches the caller."""
    server = HeldServer()
    kernel = server.kernel(monkeypatch)
    main = threading.main_thread().ident or 0

    def interrupt() -> None:
        if server.got_request.wait(10):
            # the client's last write has reached the server, but its thread may not
            # have left that write yet: let it reach the wait for the answer
            time.sleep(0.3)
            signal.pthread_kill(main, signal.SIGALRM)

    threading.Thread(target=interrupt, daemon=True).start()
    try:
        with pytest.raises(Interrupted):
            if how == "chat":
                kernel.chat(model="held/gpt-4o-mini", messages="hi")
            else:
                next(iter(kernel.stream(model="held/gpt-4o-mini", messages="hi")))
        assert server.got_request.is_set()
        assert server.client_closed.wait(10), "the upstream connection stayed open"
    finally:
        kernel.close()
        server.close()


def test_stop_cancels_calls_closes_streams_then_runs_final() -> None:
    portal = Portal()
    order: list[str] = []

    async def events() -> object:
        try:
            yield 1
            await asyncio.sleep(30)
        finally:
            await asyncio.sleep(0)
            order.append("stream closed")

    stream = events()

    async def step() -> object:
        return await anext(stream)  # type: ignore[call-overload]

    async def hang() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            order.append("call cancelled")

    async def final() -> None:
        order.append("final")

    assert portal.call(step()) == 1
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            portal.call(hang())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=caller)
    thread.start()
    _wait_for(lambda: bool(portal._calls) and all(c.task for c in portal._calls))
    portal.stop(final=final)
    thread.join(10)
    assert order == ["call cancelled", "stream closed", "final"]
    assert [str(e) for e in errors] == [CLOSED_MESSAGE]


class HeldServer:
    """Reads one HTTP request and never answers; notes when the client hangs up."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.got_request = threading.Event()
        self.client_closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(body) < length:  # the whole request: the client now only waits
                body += conn.recv(65536)
            self.got_request.set()
            conn.settimeout(20)
            try:
                while conn.recv(65536):  # never answer; b"" when the client closes
                    pass
            except OSError:
                pass
            self.client_closed.set()

    def kernel(self, monkeypatch: pytest.MonkeyPatch) -> Kernel:
        pytest.importorskip("llmkernel_openai")
        monkeypatch.setenv("LLMKERNEL_PORTAL_TEST_KEY", "sk-test")
        return Kernel.from_config(
            {
                "providers": {
                    "held": {
                        "type": "openai",
                        "base_url": f"http://127.0.0.1:{self.port}/v1",
                        "api_key_env": "LLMKERNEL_PORTAL_TEST_KEY",
                    }
                },
                "retry": {"attempts": 1},
            },
            entry_points=True,
        )

    def close(self) -> None:
        self.listener.close()


def test_close_under_an_http_call_fails_it_with_the_closed_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = HeldServer()
    kernel = server.kernel(monkeypatch)
    errors: list[BaseException] = []

    def chat() -> None:
        try:
            kernel.chat(model="held/gpt-4o-mini", messages="hi")
        except BaseException as exc:
            errors.append(exc)

    caller = threading.Thread(target=chat)
    caller.start()
    try:
        assert server.got_request.wait(10)
        kernel.close()
        caller.join(10)
        assert not caller.is_alive()
        assert [str(e) for e in errors] == [CLOSED_MESSAGE]
    finally:
        server.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_forked_child_can_call_an_http_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("llmkernel_openai")
    from llmkernel_http.testing.fake_server import FakeResponse, FakeServer

    body = {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "ok", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    monkeypatch.setenv("LLMKERNEL_PORTAL_TEST_KEY", "sk-test")
    with FakeServer() as server:
        server.expect("POST", "/v1/chat/completions", FakeResponse.json_body(body))
        kernel = Kernel.from_config(
            {
                "providers": {
                    "f": {
                        "type": "openai",
                        "base_url": f"{server.url}/v1",
                        "api_key_env": "LLMKERNEL_PORTAL_TEST_KEY",
                    }
                },
                "retry": {"attempts": 1, "timeout": 10},
            }
        )
        assert kernel.chat(model="f/gpt-4o-mini", messages="hi").text == "ok"
        try:
            assert _in_child(lambda: kernel.chat(model="f/gpt-4o-mini", messages="hi").text == "ok")
        finally:
            kernel.close()


# ------------------------------------------------------------------------ helpers


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition never became true")
        time.sleep(0.01)


# ------------------------------------------------------- who runs the loop, and when


def test_a_sync_call_runs_the_loop_in_the_calling_thread() -> None:
    portal = Portal()

    async def where() -> threading.Thread:
        return threading.current_thread()

    try:
        assert portal.call(where()) is threading.current_thread()
        seen: list[threading.Thread] = []
        worker = threading.Thread(target=lambda: seen.append(portal.call(where())))
        worker.start()
        worker.join(10)
        assert seen == [worker]  # the same loop, run by whichever thread calls
        assert threading.active_count() == 1 + _other_threads()
    finally:
        portal.stop()


def _other_threads() -> int:
    return sum(1 for t in threading.enumerate() if t is not threading.current_thread())


def test_concurrent_sync_calls_from_many_threads_all_finish() -> None:
    portal = Portal()
    loops: set[int] = set()

    async def work(i: int) -> int:
        loops.add(id(asyncio.get_running_loop()))
        await asyncio.sleep(0.001 * (i % 3))
        return i

    results: list[int] = []
    lock = threading.Lock()

    def caller(base: int) -> None:
        for i in range(base, base + 25):
            value = portal.call(work(i))
            with lock:
                results.append(value)

    threads = [threading.Thread(target=caller, args=(n * 100,)) for n in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not any(t.is_alive() for t in threads)
        assert sorted(results) == sorted(n * 100 + i for n in range(8) for i in range(25))
        assert len(loops) == 1  # one loop, so one pool of connections
        _wait_for(lambda: portal._state is not None and portal._state.driver is None)
    finally:
        portal.stop()


def test_a_task_left_running_keeps_running_between_calls() -> None:
    """A plugin's background task (health checks) runs on between sync calls: a
    daemon thread takes the loop over when the caller returns."""
    portal = Portal()
    ticked = threading.Event()

    async def start() -> None:
        async def later() -> None:
            await asyncio.sleep(0.05)
            ticked.set()

        asyncio.get_running_loop().create_task(later())

    try:
        portal.call(start())
        assert ticked.wait(10), "the task did not run after the call returned"
        # once nothing is left, the daemon lets the loop go again
        _wait_for(lambda: portal._state is not None and portal._state.driver is None)
    finally:
        portal.stop()


def test_a_sync_call_inside_a_running_loop_is_served() -> None:
    """Sync API called from async code (another loop runs in this thread): the call
    is handed to a thread that runs the kernel's loop."""
    kernel = make_kernel(["inside"])

    async def app() -> str:
        return kernel.chat(model="a/m1", messages="hi").text

    try:
        assert asyncio.run(app()) == "inside"
    finally:
        kernel.close()


def test_ctrl_c_cancels_the_call_and_raises_keyboard_interrupt() -> None:
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is handled by something else here")
    portal = Portal()
    seen: list[str] = []

    main = threading.main_thread().ident or 0
    timer = threading.Timer(0.2, signal.pthread_kill, (main, signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            portal.call(_slow(seen))
        assert seen == ["cancelled", "cleaned up"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert not portal.call(_pending())
    finally:
        timer.cancel()
        portal.stop()


def test_a_connection_the_server_closed_while_idle_is_not_reused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Between sync calls nobody runs the loop; the next call first lets it read the
    server's FIN, so the pooled connection is dropped instead of failing the call."""
    pytest.importorskip("llmkernel_openai")
    import llmkernel._portal as portal_module
    import llmkernel_openai.plugin

    monkeypatch.setattr(portal_module, "_STALE", 0.05)
    server = ClosingServer()
    monkeypatch.setenv("LLMKERNEL_PORTAL_TEST_KEY", "sk-test")
    kernel = Kernel.from_config(
        {
            "providers": {
                "c": {
                    "type": "openai",
                    "base_url": f"http://127.0.0.1:{server.port}/v1",
                    "api_key_env": "LLMKERNEL_PORTAL_TEST_KEY",
                }
            },
            "retry": {"attempts": 1, "timeout": 10},
        },
        plugins=[llmkernel_openai.plugin],
        entry_points=False,  # nothing that would retry a failed connection
    )
    try:
        assert kernel.chat(model="c/gpt-4o-mini", messages="one").text == "ok"
        assert server.closed_one.wait(10)
        time.sleep(0.2)  # idle: the FIN waits in the socket, unread
        assert kernel.chat(model="c/gpt-4o-mini", messages="two").text == "ok"
        assert server.connections == 2
    finally:
        kernel.close()
        server.close()


class ClosingServer:
    """Answers each request with keep-alive, then closes that connection at once
    (as a server closes an idle keep-alive connection)."""

    BODY = (
        b'{"id":"c","object":"chat.completion","created":1,"model":"gpt-4o-mini",'
        b'"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},'
        b'"finish_reason":"stop"}],'
        b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
    )

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.closed_one = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                while len(body) < length:
                    body += conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"connection: keep-alive\r\ncontent-length: "
                    + str(len(self.BODY)).encode()
                    + b"\r\n\r\n"
                    + self.BODY
                )
                time.sleep(0.02)
            self.closed_one.set()

    def close(self) -> None:
        self.listener.close()


def test_first_sync_calls_from_two_threads_share_one_portal() -> None:
    import threading

    from llmkernel.testing.scripted import make_kernel

    kernel = make_kernel(["one", "two", "three", "four"])
    barrier = threading.Barrier(2)
    texts: list[str] = []

    def call() -> None:
        barrier.wait()
        texts.append(kernel.chat("a/m1", "hi").text)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    portal = kernel._portal
    kernel.close()
    assert sorted(texts) == ["one", "two"]
    assert kernel.__dict__["_portal"] is portal
