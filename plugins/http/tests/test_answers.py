"""What an upstream's answer may cost the kernel, through a provider on
``HTTPProvider`` and a real ``Kernel``, against raw servers on 127.0.0.1:

* issue 26 point 9: a request that may have reached the server is never sent again
  by the HTTP layer; only the kernel's retry policy sends it once more per attempt;
* point 10: ``max_response_bytes`` bounds a body before and after decoding: an
  absurd ``Content-Length``, a gzip bomb, an endless stream event end in a
  ``MalformedResponseError`` naming the setting, and memory stays flat;
* point 12: no secret is reachable from a ``MalformedResponseError``'s chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from llmkernel import errors, hookimpl
from llmkernel.kernel import Kernel
from llmkernel.types import ChatRequest, Message, Response, StreamEvent, TextDelta, TextPart
from llmkernel_http import HTTPProvider, aiter_sse

KEY_ENV = "ANSWERS_TEST_KEY"
SECRET = "sk-answers-SECRET-4242"


class Plain(HTTPProvider):
    """The smallest provider: ``POST /chat`` answers ``{"text": ...}``, streams SSE."""

    async def send_chat(self, request: ChatRequest) -> Response:
        data, http = await self.send_json("POST", "/chat", model=request.model, json={"q": 1})
        message = Message(role="assistant", content=(TextPart(text=str(data["text"])),))
        return self.with_headers(Response(message=message, model=request.model), http)

    async def stream_events(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        response = await self.send("POST", "/chat", model=request.model, json={"stream": True})
        try:
            yield self.opened(response)
            async for event in aiter_sse(response.aiter_text()):
                yield TextDelta(text=event.data)
        finally:
            await response.aclose()


class plugin:
    @staticmethod
    @hookimpl
    def provide_chat(config: Any) -> Any:
        return Plain(config) if config.type == "plain" else None


def kernel_for(url: str, *, attempts: int = 1, **options: Any) -> Kernel:
    return Kernel.from_config(
        {
            "providers": {
                "p": {"type": "plain", "base_url": url, "api_key_env": KEY_ENV, **options}
            },
            "retry": {"attempts": attempts, "timeout": 30, "initial_wait": 0, "max_wait": 0},
        },
        plugins=[plugin],
        entry_points=False,
    )


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw(handler: Handler) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A raw server; ``handler(reader, writer, index)`` per connection. Yields the
    base URL and the requests read by :func:`request` (their bodies)."""
    seen: list[bytes] = []
    count = 0

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        count += 1
        try:
            await handler(reader, writer, count - 1)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen
    finally:
        server.close()


async def request(reader: asyncio.StreamReader, seen: list[bytes]) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    body = await reader.readexactly(length)
    seen.append(head.split(b"\r\n", 1)[0])
    return body


def answer(body: bytes, *headers: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        + b"".join(h + b"\r\n" for h in headers)
        + b"content-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


OK = answer(b'{"text": "ok"}')


# --------------------------------------------------------------------------- point 9


SSE = b"data: ok\n\n"
STREAMED = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: "
    + str(len(SSE)).encode()
    + b"\r\n\r\n"
    + SSE
)


@pytest.mark.parametrize("attempts", [1, 3])
@pytest.mark.parametrize("face", ["chat", "stream"])
async def test_a_post_read_then_dropped_reaches_the_server_once_per_attempt(
    attempts: int, face: str
) -> None:
    """The kernel's own connections (chat) and aiohttp's (streams) alike."""
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: Any, index: int) -> None:
        if index == 0:  # a first call answered, so the next one reuses the connection
            await request(reader, seen)
            writer.write(OK if face == "chat" else STREAMED)
            await writer.drain()
        await request(reader, seen)  # read, then the connection closes unanswered

    async def call(kernel: Kernel, text: str) -> str:
        if face == "chat":
            return (await kernel.achat(model="p/m", messages=text)).text
        events = [e async for e in kernel.astream(model="p/m", messages=text)]
        return "".join(e.text for e in events if e.type == "text")

    async with raw(handler) as (url, _), kernel_for(url, attempts=attempts) as kernel:
        assert await call(kernel, "first") == "ok"
        seen.clear()
        with pytest.raises(errors.NetworkError) as info:
            await call(kernel, "again")
    assert info.value.retryable
    if face == "chat":
        assert "without sending an answer" in str(info.value)
    assert seen == [b"POST /chat HTTP/1.1"] * attempts


# --------------------------------------------------------------------------- point 10


async def test_an_absurd_content_length_is_refused_before_the_body() -> None:
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: Any, index: int) -> None:
        await request(reader, [])
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10000000000\r\n\r\n{")
        with contextlib.suppress(ConnectionError):
            for _ in range(1000):  # a slow body the client must not wait for
                await asyncio.sleep(0.01)
                writer.write(b" " * 1024)
                await writer.drain()
                if reader.at_eof():
                    break
            await reader.read()
        closed.set()

    async with raw(handler) as (url, _), kernel_for(url) as kernel:
        with pytest.raises(errors.MalformedResponseError, match="max_response_bytes") as info:
            await kernel.achat(model="p/m", messages="x")
        async with asyncio.timeout(3):
            await closed.wait()  # the client hung up instead of reading on
    assert "Content-Length" in str(info.value) and "10000000000" in str(info.value)
    assert info.value.provider == "p"


def gzip_bomb(size: int) -> bytes:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = b"\0" * 2**20
    parts = [squeeze.compress(zeros) for _ in range(size // 2**20)]
    return b"".join(parts) + squeeze.flush()


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
async def test_a_gzip_bomb_is_refused_at_the_decoded_bound(http_client: str) -> None:
    bomb = gzip_bomb(256 * 2**20)  # 256 MiB of zeros in about 250 KB

    async def handler(reader: asyncio.StreamReader, writer: Any, index: int) -> None:
        while True:
            await request(reader, [])
            writer.write(answer(bomb, b"content-encoding: gzip"))
            await writer.drain()

    async with raw(handler) as (url, _):
        options = {"http_client": http_client, "max_response_bytes": 2**20}
        async with kernel_for(url, **options) as kernel:
            with pytest.raises(errors.MalformedResponseError, match="decoded body") as info:
                await kernel.achat(model="p/m", messages="x")
    assert "max_response_bytes = 1048576" in str(info.value)


class ThreadedAnswers:
    """A blocking server in a thread that answers each request with the next of
    ``answers`` (sent from memory as they are: the server's buffers are not the
    client's)."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.answers:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with sock, contextlib.suppress(OSError):
                reader = sock.makefile("rb")
                while self.answers:
                    length = 0
                    while (line := reader.readline()) not in (b"\r\n", b""):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":")[1])
                    if not line:
                        break
                    reader.read(length)
                    sock.sendall(memoryview(self.answers.pop(0)))

    def close(self) -> None:
        self.listener.close()
        self.thread.join(10)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/self/status")
def test_memory_stays_flat_for_a_gzip_bomb_and_a_huge_body() -> None:
    """The client in a process of its own, so that its peak resident size is its
    own: a 1 GiB gzip bomb (1 MB on the wire) and a 200 MiB body, with the default
    bound (64 MiB), grow its peak by less than the bound plus slack (the bomb
    reached 2.35 GB before the bound)."""
    server = ThreadedAnswers(
        [
            answer(gzip_bomb(2**30), b"content-encoding: gzip"),
            answer(b"[" + b"0," * (100 * 2**20) + b"0]"),
        ]
    )
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import test_answers as t
        from llmkernel import errors

        def peak_kib():  # this process's own peak (ru_maxrss keeps the parent's)
            with open("/proc/self/status") as status:
                line = next(x for x in status if x.startswith("VmHWM:"))
            return int(line.split()[1])

        async def main():
            async with t.kernel_for({server.url!r}) as kernel:
                before = peak_kib()
                for _ in range(2):
                    try:
                        await kernel.achat(model="p/m", messages="x")
                    except errors.MalformedResponseError as exc:
                        print(type(exc).__name__, "max_response_bytes" in str(exc))
                after = peak_kib()
            print((after - before) // 1024)

        asyncio.run(main())
        """
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env={**os.environ, KEY_ENV: SECRET},
        )
    finally:
        server.close()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split("\n")
    assert lines[:2] == ["MalformedResponseError True"] * 2, done.stdout
    # the bomb is counted a megabyte at a time, never held; the huge body is
    # refused at its Content-Length
    assert int(lines[2]) < 32, done.stdout


async def test_a_stream_event_past_its_bound_is_malformed(monkeypatch: pytest.MonkeyPatch) -> None:
    import llmkernel_http.sse as sse

    monkeypatch.setattr(sse, "MAX_EVENT_SIZE", 4096)
    monkeypatch.setattr(sse.aiter_sse, "__kwdefaults__", {"max_event_size": 4096})

    async def handler(reader: asyncio.StreamReader, writer: Any, index: int) -> None:
        await request(reader, [])
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: hi\n\n")
        await writer.drain()
        with contextlib.suppress(ConnectionError):
            writer.write(b"data: ")
            for _ in range(2000):  # one endless data line
                writer.write(b"x" * 1024)
                await writer.drain()

    async with raw(handler) as (url, _), kernel_for(url) as kernel:
        texts = []
        with pytest.raises(errors.MalformedResponseError, match="over 4096 characters"):
            async for event in kernel.astream(model="p/m", messages="x"):
                if event.type == "text":
                    texts.append(event.text)
    assert texts == ["hi"]


# --------------------------------------------------------------------------- point 12


def reachable(exc: BaseException) -> list[str]:
    """Every string reachable from ``exc`` through its chain and attributes."""
    found: list[str] = []
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        thing = todo.pop()
        if id(thing) in seen or thing is None:
            continue
        seen.add(id(thing))
        if isinstance(thing, str | bytes | bytearray):
            found.append(thing if isinstance(thing, str) else bytes(thing).decode("latin-1"))
            continue
        if isinstance(thing, dict):
            todo.extend(thing.keys())
            todo.extend(thing.values())
            continue
        if isinstance(thing, list | tuple | set | frozenset):
            todo.extend(thing)
            continue
        if isinstance(thing, BaseException):
            todo += [thing.__cause__, thing.__context__, thing.args, str(thing), repr(thing)]
        found.append(repr(thing))
        todo.extend(getattr(thing, "__dict__", {}).values())
    return found


@pytest.mark.parametrize(
    "body",
    [
        f"<html>bad key {SECRET}: not JSON</html>".encode(),
        json.dumps({"echo": f"Bearer {SECRET}"}).encode()[:-1],  # cut short: not JSON
    ],
    ids=["html", "cut-json"],
)
@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
async def test_no_secret_is_reachable_from_a_malformed_answer_error(
    body: bytes, http_client: str
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: Any, index: int) -> None:
        while True:
            await request(reader, [])
            writer.write(answer(body))
            await writer.drain()

    async with raw(handler) as (url, _), kernel_for(url, http_client=http_client) as kernel:
        with pytest.raises(errors.MalformedResponseError) as info:
            await kernel.achat(model="p/m", messages="x")
    assert "not JSON" in str(info.value) and "[redacted]" in str(info.value)
    strings = reachable(info.value)
    assert strings and not [s for s in strings if SECRET in s]
    assert info.value.__context__ is None and info.value.__cause__ is None
