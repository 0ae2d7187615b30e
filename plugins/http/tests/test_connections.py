"""The kernel's own keep-alive HTTP/1.1 connections (``llmkernel_http.connections``)
against raw servers on 127.0.0.1 that send exact bytes: framing (Content-Length,
chunked, the connection's end), keep-alive and its exceptions, malformed answers,
timeouts, the bound on connections, cancellation, closing, TLS, and the public
path (``send_json`` through a provider) on top."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import json
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmkernel_http.connections import ConnectionPool

T: dict[str, float | None] = {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def timeouts(**changes: float | None) -> dict[str, float | None]:
    return {**T, **changes}


def answer(body: bytes = b"ok", *headers: str, status: str = "200 OK") -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers, f"content-length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# ----------------------------------------------------------------------------- servers


@dataclass
class Request:
    line: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes

    def get(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name]


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """One request (bodies by Content-Length only), or None at the connection's end."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].decode("latin-1").split("\r\n")
        headers = [(n, v.strip()) for n, _, v in (x.partition(":") for x in lines[1:])]
        length = next((int(v) for n, v in headers if n.lower() == "content-length"), 0)
        body = await reader.readexactly(length) if length else b""
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return Request(lines[0], headers, body, head + body)


@dataclass(eq=False)
class Peer:
    """The server's side of one accepted connection."""

    server: Server
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    index: int
    requests: list[Request] = field(default_factory=list)
    #: set when the client closed (or reset) the connection, seen by read_end()
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    async def request(self) -> Request | None:
        request = await read_request(self.reader)
        if request is None:
            self.ended.set()
            return None
        self.requests.append(request)
        self.server.requests.append(request)
        self.server.got_request.set()
        return request

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def trickle(self, data: bytes, pause: float = 0.001) -> None:
        """``data`` one byte a write, each flushed and followed by ``pause``."""
        for i in range(len(data)):
            await self.send(data[i : i + 1])
            await asyncio.sleep(pause)

    async def read_end(self) -> None:
        """Wait until the client closes its side (EOF or a reset)."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(65536):
                pass
        self.ended.set()

    def reset(self) -> None:
        """Close with a TCP reset instead of a FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.writer.transport.abort()


Handler = Callable[[Peer], Awaitable[None]]


class Server:
    """A raw HTTP server on 127.0.0.1; ``handler`` runs for each accepted connection
    and the connection is closed when it returns."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.peers: list[Peer] = []
        self.requests: list[Request] = []
        self.got_request = asyncio.Event()
        self.open = 0
        self.max_open = 0
        self.port = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None

    def url(self, path: str = "/", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def start(self, context: ssl.SSLContext | None = None) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = Peer(self, reader, writer, len(self.peers))
        self.peers.append(peer)
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            await self.handler(peer)
        except (ConnectionError, asyncio.CancelledError):  # cancelled by stop()
            pass
        finally:
            self.open -= 1
            writer.close()
            self._tasks.discard(task)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for peer in self.peers:
            peer.writer.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def wait_requests(self, count: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                self.got_request.clear()
                await self.got_request.wait()


@contextlib.asynccontextmanager
async def serving(handler: Handler, context: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    server = Server(handler)
    await server.start(context)
    try:
        yield server
    finally:
        await server.stop()


def answering(*answers: bytes) -> Handler:
    """Every request on every connection gets the next of ``answers`` (the last
    one once they run out), as long as the client keeps the connection."""
    queue = list(answers)

    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(queue.pop(0) if len(queue) > 1 else queue[0])

    return handler


def no_tls() -> bool:
    raise AssertionError("no TLS context is needed for http")


@pytest.fixture
async def pool() -> AsyncIterator[ConnectionPool]:
    pool = ConnectionPool(ssl_context=no_tls)
    yield pool
    pool.close()


async def get(client: ConnectionPool, url: str, **changes: float | None) -> Any:
    return await client.exchange("GET", url, [], None, timeouts(**changes))


async def ended(peer: Peer, timeout: float = 5.0) -> bool:
    """Whether the client closed ``peer``'s connection within ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            await peer.ended.wait()
    except TimeoutError:
        return False
    return True


# ----------------------------------------------------------------------------- the request


async def test_a_post_sends_the_exact_request_and_reads_a_content_length_body(
    pool: ConnectionPool,
) -> None:
    body = b'{"ok": true}'
    async with serving(answering(answer(body, "content-type: application/json"))) as server:
        result = await pool.exchange(
            "POST",
            server.url("/v1/chat?x=1&y=a%20b&z=%C3%A9"),
            [("content-type", "application/json"), ("Authorization", "Bearer k")],
            b'{"a": 1}',
            T,
        )
    assert result == (
        200,
        "OK",
        ((b"content-type", b"application/json"), (b"content-length", b"12")),
        body,
    )
    assert server.requests[0].raw == (
        b"POST /v1/chat?x=1&y=a%20b&z=%C3%A9 HTTP/1.1\r\n"
        + f"host: 127.0.0.1:{server.port}\r\n".encode()
        + b"content-type: application/json\r\n"
        b"Authorization: Bearer k\r\n"
        b"content-length: 8\r\n"
        b"\r\n"
        b'{"a": 1}'
    )


async def test_a_get_without_a_body_sends_no_content_length(pool: ConnectionPool) -> None:
    async with serving(answering(OK)) as server:
        assert (await get(pool, server.url("/v1/models")))[3] == b"ok"
    request = server.requests[0]
    assert request.line == "GET /v1/models HTTP/1.1"
    assert request.get("content-length") == []
    assert request.get("host") == [f"127.0.0.1:{server.port}"]
    assert request.body == b""


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
async def test_a_post_without_content_sends_a_zero_content_length(
    pool: ConnectionPool, method: str
) -> None:
    async with serving(answering(OK)) as server:
        await pool.exchange(method, server.url("/x"), [], None, T)
        await pool.exchange(method, server.url("/x"), [], b"", T)
    assert [r.line for r in server.requests] == [f"{method} /x HTTP/1.1"] * 2
    assert [r.get("content-length") for r in server.requests] == [["0"], ["0"]]


@pytest.mark.parametrize(
    ("path", "line"),
    [("", "GET / HTTP/1.1"), ("?q=1", "GET /?q=1 HTTP/1.1"), ("/a/b/", "GET /a/b/ HTTP/1.1")],
)
async def test_the_request_target_is_the_urls_path_and_query(
    pool: ConnectionPool, path: str, line: str
) -> None:
    async with serving(answering(OK)) as server:
        await get(pool, server.url(path))
    assert server.requests[0].line == line


# ----------------------------------------------------------------------------- keep-alive


async def test_sequential_exchanges_reuse_one_connection(pool: ConnectionPool) -> None:
    async with serving(answering(answer(b"one"), answer(b"two"), answer(b"three"))) as server:
        bodies = [(await get(pool, server.url(f"/{i}")))[3] for i in range(3)]
        assert bodies == [b"one", b"two", b"three"]
        assert len(server.peers) == 1
        assert [r.line for r in server.peers[0].requests] == [
            "GET /0 HTTP/1.1",
            "GET /1 HTTP/1.1",
            "GET /2 HTTP/1.1",
        ]


@pytest.mark.parametrize(
    "closing",
    [
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nConnection: Close\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
    ],
    ids=["close", "Close", "http/1.0"],
)
async def test_an_answer_that_closes_makes_the_next_exchange_open_a_new_connection(
    pool: ConnectionPool, closing: bytes
) -> None:
    # the server itself keeps the connection open: the client decides from the answer
    async with serving(answering(closing, OK)) as server:
        assert (await get(pool, server.url()))[3] == b"ok"
        assert await ended(server.peers[0])  # the client closed it
        assert (await get(pool, server.url()))[3] == b"ok"
        assert len(server.peers) == 2
        assert [len(p.requests) for p in server.peers] == [1, 1]


async def test_an_http_1_0_answer_with_keep_alive_is_reused(pool: ConnectionPool) -> None:
    kept = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\ncontent-length: 2\r\n\r\nok"
    async with serving(answering(kept)) as server:
        for _ in range(3):
            assert (await get(pool, server.url()))[:2] == (200, "OK")
        assert len(server.peers) == 1


async def test_an_idle_connection_past_its_expiry_is_not_reused() -> None:
    pool = ConnectionPool(keepalive_expiry=0.1, ssl_context=no_tls)
    try:
        async with serving(answering(OK)) as server:
            await get(pool, server.url())
            await asyncio.sleep(0.25)
            await get(pool, server.url())
            assert len(server.peers) == 2
            assert await ended(server.peers[0])
    finally:
        pool.close()


async def test_connections_are_kept_per_host_and_port(pool: ConnectionPool) -> None:
    async with serving(answering(answer(b"a"))) as a, serving(answering(answer(b"b"))) as b:
        for _ in range(2):
            assert (await get(pool, a.url()))[3] == b"a"
            assert (await get(pool, b.url()))[3] == b"b"
        assert (len(a.peers), len(b.peers)) == (1, 1)
        assert (len(a.requests), len(b.requests)) == (2, 2)


# ----------------------------------------------------------------------------- framing


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nTransfer-Encoding: Chunked\r\n\r\n"
CHUNKED_BODY = (
    b"5;foo=bar\r\nhello\r\n"
    b"7\r\n, world\r\n"
    b'1A;name="quoted"\r\n' + b"x" * 26 + b"\r\n"
    b"0\r\nx-checksum: abc\r\nx-other: 1\r\n\r\n"
)


async def test_a_chunked_body_split_across_many_writes(pool: ConnectionPool) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(CHUNKED_HEAD[:20])
        await asyncio.sleep(0.01)
        await peer.send(CHUNKED_HEAD[20:])
        await peer.trickle(CHUNKED_BODY[:25])  # size lines and data byte by byte
        await peer.send(CHUNKED_BODY[25:40])
        await asyncio.sleep(0.01)
        await peer.trickle(CHUNKED_BODY[40:-20])
        await peer.send(CHUNKED_BODY[-20:-3])  # the trailers, then their end in two parts
        await asyncio.sleep(0.01)
        await peer.send(CHUNKED_BODY[-3:])
        # the connection is reused: a second chunked answer without trailers, then one
        # whose last chunk's CRLF comes alone
        await peer.request()
        await peer.send(CHUNKED_HEAD + b"3\r\nabc\r\n0\r\n\r\n")
        await peer.request()
        await peer.send(CHUNKED_HEAD + b"2\r\nde\r\n0\r\n\r")
        await asyncio.sleep(0.01)
        await peer.send(b"\n")
        await peer.read_end()

    async with serving(handler) as server:
        status, _, headers, body = await get(pool, server.url())
        assert status == 200
        assert body == b"hello, world" + b"x" * 26
        assert (b"Transfer-Encoding", b"Chunked") in headers
        assert (await get(pool, server.url()))[3] == b"abc"
        assert (await get(pool, server.url()))[3] == b"de"
        assert len(server.peers) == 1


async def test_a_whole_chunked_answer_written_byte_by_byte(pool: ConnectionPool) -> None:
    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.trickle(CHUNKED_HEAD + CHUNKED_BODY, pause=0)

    async with serving(handler) as server:
        for _ in range(2):
            assert (await get(pool, server.url()))[3] == b"hello, world" + b"x" * 26
        assert len(server.peers) == 1


async def test_a_content_length_body_written_byte_by_byte(pool: ConnectionPool) -> None:
    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.trickle(answer(b"0123456789"), pause=0)

    async with serving(handler) as server:
        for _ in range(2):
            assert (await get(pool, server.url()))[3] == b"0123456789"
        assert len(server.peers) == 1


@pytest.mark.parametrize(
    "head",
    [b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n", b"HTTP/1.0 200 OK\r\n\r\n"],
    ids=["http/1.1", "http/1.0"],
)
async def test_a_body_delimited_by_the_connections_end(pool: ConnectionPool, head: bytes) -> None:
    async def handler(peer: Peer) -> None:
        if peer.index == 0:
            await peer.request()
            await peer.send(head + b"part one, ")
            await asyncio.sleep(0.02)
            await peer.send(b"part two")
            return  # closing the connection ends the body
        await answering(OK)(peer)

    async with serving(handler) as server:
        assert (await get(pool, server.url()))[3] == b"part one, part two"
        assert (await get(pool, server.url()))[3] == b"ok"
        assert len(server.peers) == 2


async def test_informational_answers_are_skipped(pool: ConnectionPool) -> None:
    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            await asyncio.sleep(0.01)
            await peer.send(
                b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\n"
                + answer(b"real", "x-final: yes", status="201 Created")
            )

    async with serving(handler) as server:
        for _ in range(2):
            status, reason, headers, body = await pool.exchange("POST", server.url(), [], b"{}", T)
            assert (status, reason, body) == (201, "Created", b"real")
            assert headers == ((b"x-final", b"yes"), (b"content-length", b"4"))
        assert len(server.peers) == 1


async def test_answers_without_a_body_keep_the_connection_usable(pool: ConnectionPool) -> None:
    answers = [
        b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\ncontent-type: text/html\r\n\r\n",  # HEAD
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b'HTTP/1.1 304 Not Modified\r\ncontent-length: 99\r\netag: "x"\r\n\r\n',
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",  # HEAD
        answer(b"after"),
    ]
    async with serving(answering(*answers)) as server:
        url = server.url()
        head = await pool.exchange("HEAD", url, [], None, timeouts(read=2))
        assert head == (
            200,
            "OK",
            ((b"content-length", b"1234"), (b"content-type", b"text/html")),
            b"",
        )
        assert (await get(pool, url, read=2))[::3] == (204, b"")
        assert (await get(pool, url, read=2))[::3] == (304, b"")
        assert (await pool.exchange("HEAD", url, [], None, timeouts(read=2)))[::3] == (200, b"")
        assert (await get(pool, url, read=2))[::3] == (200, b"after")
        assert len(server.peers) == 1
        assert [r.line.split()[0] for r in server.requests] == ["HEAD", "GET", "GET", "HEAD", "GET"]


async def test_raw_headers_reason_and_an_encoded_body_come_back_as_sent(
    pool: ConnectionPool,
) -> None:
    original = json.dumps({"text": "squeezed " * 20}).encode()
    squeezed = gzip.compress(original)
    head = (
        b"HTTP/1.1 200 Fine, thanks\r\n"
        b"Set-Cookie: a=1\r\n"
        b"x-padded:   spaced value \t\r\n"
        b"x-empty:\r\n"
        b"set-cookie: b=2\r\n"
        b"Content-Encoding: gzip\r\n" + f"Content-Length: {len(squeezed)}\r\n\r\n".encode()
    )
    async with serving(answering(head + squeezed)) as server:
        status, reason, headers, body = await get(pool, server.url())
    assert (status, reason) == (200, "Fine, thanks")
    assert headers == (
        (b"Set-Cookie", b"a=1"),
        (b"x-padded", b"spaced value"),
        (b"x-empty", b""),
        (b"set-cookie", b"b=2"),
        (b"Content-Encoding", b"gzip"),
        (b"Content-Length", str(len(squeezed)).encode()),
    )
    assert body == squeezed
    assert gzip.decompress(body) == original


@pytest.mark.parametrize(
    ("status_line", "status", "reason"),
    [
        (b"HTTP/1.1 404 Not Found", 404, "Not Found"),
        (b"HTTP/1.1 500 ", 500, ""),
        (b"HTTP/1.1 200", 200, ""),
        (b"HTTP/1.1 299 Caf\xe9", 299, "Café"),
    ],
)
async def test_the_status_and_reason(
    pool: ConnectionPool, status_line: bytes, status: int, reason: str
) -> None:
    async with serving(answering(status_line + b"\r\ncontent-length: 1\r\n\r\nx")) as server:
        assert await get(pool, server.url()) == (status, reason, ((b"content-length", b"1"),), b"x")
        assert (await get(pool, server.url()))[0] == status  # an error status is kept too
        assert len(server.peers) == 1


# ----------------------------------------------------------------------------- closed connections


async def test_a_connection_the_server_closed_while_idle_is_replaced(
    pool: ConnectionPool,
) -> None:
    client_has_it = asyncio.Event()

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer(f"conn {peer.index}".encode()))
        if peer.index == 0:
            await client_has_it.wait()
            return  # closes the kept connection
        await answering(answer(b"again"))(peer)

    async with serving(handler) as server:
        assert (await get(pool, server.url()))[3] == b"conn 0"
        client_has_it.set()
        await asyncio.sleep(0.05)  # the server's close reaches the client
        assert (await get(pool, server.url("/after")))[3] == b"conn 1"
        assert (await get(pool, server.url()))[3] == b"again"
        assert len(server.peers) == 2
        # seen closed before writing: the request went out once, on the new connection
        assert [r.line for r in server.requests].count("GET /after HTTP/1.1") == 1
        assert server.peers[0].requests[1:] == []


async def test_a_close_pending_on_a_kept_connection_is_seen_before_writing(
    pool: ConnectionPool,
) -> None:
    """The server's FIN is in the socket but the loop has not read it yet: the
    zero-timeout poll before writing sees it, so the request goes to a new
    connection and is sent once."""
    closed = threading.Event()

    def serve(listener: socket.socket) -> None:
        first, _ = listener.accept()
        with first:
            first.recv(65536)
            first.sendall(OK)
            first.shutdown(socket.SHUT_WR)  # a FIN, while the client's loop is busy
            closed.set()
            first.recv(65536)  # nothing more comes on it
        second, _ = listener.accept()
        with second:
            requests.append(second.recv(65536))
            second.sendall(OK)
            second.recv(65536)

    requests: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(target=serve, args=(listener,), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        assert (await get(pool, url))[3] == b"ok"
        assert closed.wait(5)
        time.sleep(0.05)  # the FIN arrives; the loop does not run meanwhile
        assert (await pool.exchange("POST", url + "again", [], b"{}", T))[3] == b"ok"
        assert len(requests) == 1 and requests[0].startswith(b"POST /again ")
    finally:
        pool.close()
        listener.close()
        thread.join(5)


async def test_a_request_written_on_a_kept_connection_that_ends_unanswered_is_not_sent_again(
    pool: ConnectionPool,
) -> None:
    # issue 26 point 9: the server read the request, then closed without answering;
    # it may have acted on it (a bill), so the pool does not send it again
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer(f"conn {peer.index}".encode()))
        if peer.index == 0:
            await peer.request()  # read, then dropped unanswered
            return
        await answering(answer(b"again"))(peer)

    async with serving(handler) as server:
        assert (await get(pool, server.url()))[3] == b"conn 0"
        with pytest.raises(httpx.RemoteProtocolError, match="without sending an answer"):
            await pool.exchange("POST", server.url("/second"), [], b"{}", T)
        assert [r.line for r in server.requests].count("POST /second HTTP/1.1") == 1
        assert len(server.peers) == 1
        assert (await get(pool, server.url()))[3] == b"conn 1"  # the pool goes on
        assert len(server.peers) == 2


async def test_a_fresh_connection_closed_without_an_answer_is_not_retried(
    pool: ConnectionPool,
) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()

    async with serving(handler) as server:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending an answer"):
            await get(pool, server.url())
        assert len(server.peers) == 1
        assert len(server.requests) == 1


@pytest.mark.parametrize(
    "partial",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nwo",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-le",
        b"HTTP/1.1 100 Continue\r\n\r\n",
    ],
    ids=["content-length", "mid-chunk", "before-the-last-crlf", "in-the-head", "after-1xx"],
)
async def test_an_answer_cut_off_by_the_connections_end_fails(
    pool: ConnectionPool, partial: bytes
) -> None:
    async def handler(peer: Peer) -> None:
        if peer.index == 0:
            await peer.request()
            await peer.send(partial)
            return
        await answering(answer(b"whole"))(peer)

    async with serving(handler) as server:
        with pytest.raises(httpx.RemoteProtocolError, match="before the answer was complete"):
            await get(pool, server.url())
        assert (await get(pool, server.url()))[3] == b"whole"  # the pool still works
        assert len(server.peers) == 2


async def test_a_reset_mid_body_fails_and_the_pool_recovers(pool: ConnectionPool) -> None:
    async def handler(peer: Peer) -> None:
        if peer.index == 0:
            await peer.request()
            await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nsome")
            await asyncio.sleep(0.05)
            peer.reset()
            return
        await answering(answer(b"whole"))(peer)

    async with serving(handler) as server:
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await get(pool, server.url())
        assert (await get(pool, server.url()))[3] == b"whole"
        assert len(server.peers) == 2


# ----------------------------------------------------------------------------- malformed answers


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (b"garbage\r\n\r\n", "malformed answer"),
        (b"SPDY/3 200 OK\r\ncontent-length: 0\r\n\r\n", "malformed answer"),
        (b"HTTP/2 200 OK\r\ncontent-length: 0\r\n\r\n", "malformed answer"),
        (b"HTTP/1.1 2x0 OK\r\ncontent-length: 0\r\n\r\n", "malformed answer"),
        (b"HTTP/1.1 20\r\n\r\n", "malformed answer"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 12abc\r\n\r\n", "malformed answer: .*Content-Length"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", "malformed answer: .*Content-Length"),
        (b"HTTP/1.1 200 OK\r\ncontent-length:\r\n\r\n", "malformed answer: .*Content-Length"),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nContent-Length: 3\r\n\r\nabc",
            "malformed answer: Duplicate Content-Length",
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            "malformed answer: Invalid character in chunk size",
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\r\n",
            "malformed answer: Invalid character in chunk size",
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n-2\r\nab\r\n0\r\n\r\n",
            "malformed answer: Invalid character in chunk size",
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabcd\r\n",
            "malformed answer: Expected LF after chunk data",
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + b"1" * 5000,
            "malformed answer: Chunk size overflow",
        ),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed answer"),
        (b"HTTP/1.1 200 OK\r\n: no name\r\n\r\n", "malformed answer"),
        (b"HTTP/1.1 200 OK\r\nname : value\r\n\r\n", "malformed answer"),
        (b"HTTP/1.1 200 OK\r\nx-a: 1\r\n folded\r\n\r\n", "malformed answer"),
        (
            b"HTTP/1.1 200 OK\r\n" + b"x-big: " + b"v" * 70_000,
            "status line and headers are over 65536 bytes",
        ),
        (
            b"HTTP/1.1 200 OK\r\n" + b"x-many: v\r\n" * 8000,
            "status line and headers are over 65536 bytes",
        ),
    ],
    ids=[
        "garbage",
        "spdy",
        "http/2",
        "status-not-a-number",
        "status-short",
        "content-length-letters",
        "content-length-negative",
        "content-length-empty",
        "content-length-conflicting",
        "chunk-size-letters",
        "chunk-size-empty",
        "chunk-size-negative",
        "chunk-without-crlf",
        "chunk-size-line-too-long",
        "header-without-colon",
        "header-without-name",
        "space-before-colon",
        "folded-header",
        "one-header-over-64k",
        "headers-over-64k",
    ],
)
async def test_a_malformed_answer_is_a_protocol_error(
    pool: ConnectionPool, bad: bytes, message: str
) -> None:
    async def handler(peer: Peer) -> None:
        if peer.index == 0:
            await peer.request()
            await peer.send(bad)
            await peer.read_end()  # the server never closes: the client must give up
            return
        await answering(answer(b"fine"))(peer)

    async with serving(handler) as server:
        with pytest.raises(httpx.RemoteProtocolError, match=message):
            await get(pool, server.url(), read=3)
        assert await ended(server.peers[0])  # the client dropped the connection
        assert (await get(pool, server.url()))[3] == b"fine"
        assert len(server.peers) == 2


async def test_bytes_after_the_answer_make_the_connection_unusable(pool: ConnectionPool) -> None:
    async with serving(answering(OK + b"HTTP/1.1 200 OK\r\n", OK)) as server:
        assert (await get(pool, server.url()))[3] == b"ok"
        assert await ended(server.peers[0])
        assert (await get(pool, server.url()))[3] == b"ok"
        assert len(server.peers) == 2


async def test_unsolicited_bytes_on_an_idle_connection_close_it(pool: ConnectionPool) -> None:
    sent = asyncio.Event()

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(OK)
        if peer.index == 0:
            await asyncio.sleep(0.02)
            await peer.send(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
            sent.set()
            await peer.read_end()
            return
        await answering(OK)(peer)

    async with serving(handler) as server:
        await get(pool, server.url())
        await sent.wait()
        assert await ended(server.peers[0])
        assert (await get(pool, server.url()))[3] == b"ok"
        assert len(server.peers) == 2
        assert len(server.peers[0].requests) == 1


# ----------------------------------------------------------------------------- timeouts


async def test_no_answer_is_a_read_timeout(pool: ConnectionPool) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.read_end()

    async with serving(handler) as server:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await get(pool, server.url(), read=0.2)
        assert time.monotonic() - started >= 0.15
        assert await ended(server.peers[0])


async def test_a_stalled_body_is_a_read_timeout(pool: ConnectionPool) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf")
        await peer.read_end()

    async with serving(handler) as server:
        with pytest.raises(httpx.ReadTimeout):
            await get(pool, server.url(), read=0.2)
        assert await ended(server.peers[0])


async def test_the_read_timeout_is_between_bytes_not_for_the_whole_answer(
    pool: ConnectionPool,
) -> None:
    body = b"slowly, slowly"  # 14 bytes a 0.05 s apart: 0.7 s in all, beyond 0.2 s

    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            await asyncio.sleep(0.05)
            await peer.send(b"HTTP/1.1 200 OK\r\n")
            await asyncio.sleep(0.05)
            await peer.send(f"content-length: {len(body)}\r\n\r\n".encode())
            await peer.trickle(body, pause=0.05)

    async with serving(handler) as server:
        assert (await get(pool, server.url(), read=0.2))[3] == body
        assert len(server.peers) == 1


async def test_a_read_timeout_of_none_waits(pool: ConnectionPool) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await asyncio.sleep(0.3)
        await peer.send(OK)

    async with serving(handler) as server:
        assert (await get(pool, server.url(), read=None))[3] == b"ok"


@pytest.mark.skipif(
    sys.platform != "linux", reason="relies on Linux dropping SYNs to a full backlog"
)
async def test_a_connection_not_accepted_in_time_is_a_connect_timeout(
    pool: ConnectionPool,
) -> None:
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(4):  # fill the accept queue; later handshakes are never answered
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.ConnectTimeout):
            await get(pool, f"http://127.0.0.1:{port}/", connect=0.2)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


# ----------------------------------------------------------------------------- refused requests


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_refused_connection_is_a_connect_error(pool: ConnectionPool) -> None:
    with pytest.raises(httpx.ConnectError):
        await get(pool, f"http://127.0.0.1:{_closed_port()}/")
    # the failed connection does not count against the bound
    bounded = ConnectionPool(max_connections=1, ssl_context=no_tls)
    try:
        for _ in range(3):
            with pytest.raises(httpx.ConnectError):
                await get(bounded, f"http://127.0.0.1:{_closed_port()}/", pool=0.5)
        async with serving(answering(OK)) as server:
            assert (await get(bounded, server.url(), pool=0.5))[3] == b"ok"
    finally:
        bounded.close()


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1/x", "ws://127.0.0.1/", "http:///path", "http://127.0.0.1:99999/", "/x"],
)
async def test_an_unusable_url_is_an_unsupported_protocol(pool: ConnectionPool, url: str) -> None:
    with pytest.raises(httpx.UnsupportedProtocol):
        await get(pool, url)


@pytest.mark.parametrize(
    ("headers", "path"),
    [
        ([("x-evil", "a\r\nx-injected: 1")], "/"),
        ([("x-evil", "a\nx-injected: 1")], "/"),
        ([("x-evil", "a\rb")], "/"),
        ([("x-evil\r\nx-injected", "1")], "/"),
        ([("x-euro", "€")], "/"),
        ([], "/a b"),
        ([], "/caf\u00e9"),
        ([], "/a\r\nx-injected: 1"),
    ],
    ids=[
        "crlf-in-value",
        "lf-in-value",
        "cr-in-value",
        "crlf-in-name",
        "not-latin-1",
        "space-in-target",
        "unencoded-target",
        "crlf-in-target",
    ],
)
async def test_a_request_that_cannot_be_sent_is_refused_before_anything_is_sent(
    pool: ConnectionPool, headers: list[tuple[str, str]], path: str
) -> None:
    async with serving(answering(OK)) as server:
        with pytest.raises(httpx.LocalProtocolError):
            await pool.exchange("POST", server.url(path), headers, b"x", T)
        assert (await get(pool, server.url("/fine")))[3] == b"ok"
        assert len(server.peers) == 1
        assert [r.line for r in server.requests] == ["GET /fine HTTP/1.1"]
        assert all(not r.get("x-injected") for r in server.requests)


# ----------------------------------------------------------------------------- the bound


async def test_max_connections_bounds_the_open_connections() -> None:
    pool = ConnectionPool(max_connections=2, ssl_context=no_tls)

    async def handler(peer: Peer) -> None:
        while (request := await peer.request()) is not None:
            await asyncio.sleep(0.05)
            await peer.send(answer(request.line.split()[1].encode()))

    try:
        async with serving(handler) as server:
            bodies = await asyncio.gather(*(get(pool, server.url(f"/{i}")) for i in range(5)))
            assert [b[3] for b in bodies] == [f"/{i}".encode() for i in range(5)]
            assert server.max_open <= 2
            assert len(server.peers) == 2
            assert len(server.requests) == 5
    finally:
        pool.close()


async def test_no_free_connection_within_the_pool_timeout_is_a_pool_timeout() -> None:
    pool = ConnectionPool(max_connections=2, ssl_context=no_tls)
    release = asyncio.Event()

    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            await release.wait()
            await peer.send(OK)

    try:
        async with serving(handler) as server:
            busy = [asyncio.create_task(get(pool, server.url())) for _ in range(2)]
            await server.wait_requests(2)
            with pytest.raises(httpx.PoolTimeout):
                await get(pool, server.url(), pool=0.1)
            release.set()
            assert [(await t)[3] for t in busy] == [b"ok", b"ok"]
            assert (await get(pool, server.url(), pool=0.1))[3] == b"ok"
            assert len(server.peers) == 2
            assert len(server.requests) == 3
    finally:
        pool.close()


async def test_a_bounded_pool_reaches_another_host_past_idle_connections() -> None:
    # one connection at most: the idle one to the first server makes room for the second
    pool = ConnectionPool(max_connections=1, ssl_context=no_tls)
    try:
        async with serving(answering(answer(b"a"))) as a, serving(answering(answer(b"b"))) as b:
            assert (await get(pool, a.url(), pool=0.5))[3] == b"a"
            assert (await get(pool, b.url(), pool=0.5))[3] == b"b"
            assert await ended(a.peers[0])  # closed to make room
            assert (await get(pool, a.url(), pool=0.5))[3] == b"a"
            assert (len(a.peers), len(b.peers)) == (2, 1)
    finally:
        pool.close()


async def test_a_waiter_for_another_host_gets_the_slot_of_a_released_connection() -> None:
    pool = ConnectionPool(max_connections=1, ssl_context=no_tls)
    release = asyncio.Event()

    async def held(peer: Peer) -> None:
        while await peer.request() is not None:
            await release.wait()
            await peer.send(answer(b"a"))

    try:
        async with serving(held) as a, serving(answering(answer(b"b"))) as b:
            first = asyncio.create_task(get(pool, a.url()))
            await a.wait_requests(1)
            second = asyncio.create_task(get(pool, b.url(), pool=2))
            await asyncio.sleep(0.02)
            assert not second.done()  # waiting for the one connection
            release.set()
            assert (await first)[3] == b"a"
            assert (await second)[3] == b"b"
    finally:
        pool.close()


# ----------------------------------------------------------------------------- cancellation


async def test_a_cancelled_exchange_closes_its_connection_and_frees_its_slot() -> None:
    pool = ConnectionPool(max_connections=1, ssl_context=no_tls)

    async def handler(peer: Peer) -> None:
        if peer.index == 0:
            await peer.request()
            await peer.read_end()  # never answers
            return
        await answering(answer(b"later"))(peer)

    try:
        async with serving(handler) as server:
            task = asyncio.create_task(get(pool, server.url()))
            await server.wait_requests(1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await ended(server.peers[0])
            async with asyncio.timeout(3):
                assert (await get(pool, server.url(), pool=1))[3] == b"later"
                assert (await get(pool, server.url(), pool=1))[3] == b"later"
            assert len(server.peers) == 2
    finally:
        pool.close()


async def test_a_cancelled_wait_for_a_slot_leaves_the_pool_consistent() -> None:
    pool = ConnectionPool(max_connections=1, ssl_context=no_tls)
    release = asyncio.Event()

    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            await release.wait()
            await peer.send(OK)

    try:
        async with serving(handler) as server:
            busy = asyncio.create_task(get(pool, server.url()))
            await server.wait_requests(1)
            waiting = asyncio.create_task(get(pool, server.url()))
            await asyncio.sleep(0.02)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            release.set()
            assert (await busy)[3] == b"ok"
            async with asyncio.timeout(3):
                assert (await get(pool, server.url(), pool=1))[3] == b"ok"
            assert len(server.peers) == 1
            assert len(server.requests) == 2
    finally:
        pool.close()


async def test_a_waiter_cancelled_after_it_was_given_the_slot_passes_it_on() -> None:
    # the busy exchange ends and wakes the first waiter, which is cancelled before
    # it runs: the second waiter must be woken instead of waiting for nothing
    pool = ConnectionPool(max_connections=1, ssl_context=no_tls)

    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            await asyncio.sleep(0.05)  # the two waiters queue up meanwhile
            await peer.send(OK)

    try:
        async with serving(handler) as server:
            given = asyncio.create_task(get(pool, server.url()))
            next_in_line = asyncio.create_task(get(pool, server.url(), pool=1))
            # this task's own exchange holds the one connection; both tasks wait for it
            assert (await get(pool, server.url()))[3] == b"ok"
            assert not given.done()  # woken by the release, not yet run
            given.cancel()
            with pytest.raises(asyncio.CancelledError):
                await given
            assert (await next_in_line)[3] == b"ok"
            assert len(server.requests) == 2
    finally:
        pool.close()


# ----------------------------------------------------------------------------- closing


async def test_close_closes_idle_connections_and_the_pool_still_works(
    pool: ConnectionPool,
) -> None:
    async with serving(answering(OK)) as server:
        await get(pool, server.url())
        await get(pool, server.url())
        pool.close()
        assert await ended(server.peers[0])
        assert (await get(pool, server.url()))[3] == b"ok"
        assert (await get(pool, server.url()))[3] == b"ok"
        assert len(server.peers) == 2
        assert [len(p.requests) for p in server.peers] == [2, 2]


async def test_a_connection_busy_at_close_is_closed_when_its_exchange_ends(
    pool: ConnectionPool,
) -> None:
    release = asyncio.Event()

    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            await release.wait()
            await peer.send(OK)

    async with serving(handler) as server:
        busy = asyncio.create_task(get(pool, server.url()))
        await server.wait_requests(1)
        pool.close()
        release.set()
        assert (await busy)[3] == b"ok"
        assert await ended(server.peers[0])
        assert (await get(pool, server.url()))[3] == b"ok"
        assert len(server.peers) == 2


class ThreadedServer:
    """A blocking keep-alive server in a thread, outliving any event loop."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.requests = 0
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            self._sockets.append(sock)
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        """Answer every GET (no bodies) with ``OK`` until the client closes."""
        with sock, sock.makefile("rb") as reader:
            try:
                while True:
                    line = reader.readline()
                    if not line:
                        return
                    if line == b"\r\n":  # the end of a request's head
                        self.requests += 1
                        sock.sendall(OK)
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
        for sock in self._sockets:  # a connection of a loop gone may still be open
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)


# The first loop's idle connection is left behind when the pool moves to the second
# loop (its transport cannot be closed without its loop): collected here, so that its
# "unclosed" ResourceWarning stays in this test.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_pool_used_from_two_event_loops_in_turn() -> None:
    server = ThreadedServer()
    pool = ConnectionPool(ssl_context=no_tls)
    url = f"http://127.0.0.1:{server.port}/"

    async def twice(close: bool = False) -> list[bytes]:
        try:
            return [(await get(pool, url))[3] for _ in range(2)]
        finally:
            if close:
                pool.close()

    try:
        assert asyncio.run(twice()) == [b"ok", b"ok"]
        assert server.connections == 1
        assert asyncio.run(twice(close=True)) == [b"ok", b"ok"]
        assert server.connections == 2  # the first loop's connection is not reused
        assert server.requests == 4
    finally:
        server.close()
        gc.collect()


# ----------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    yield cert, key


async def test_an_https_exchange_over_tls(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    made: list[ssl.SSLContext] = []

    def context() -> ssl.SSLContext:
        made.append(client_context)
        return client_context

    pool = ConnectionPool(ssl_context=context)
    try:
        async with serving(answering(answer(b"secret")), server_context) as server:
            for _ in range(2):
                status, _, _, body = await pool.exchange(
                    "POST", server.url("/tls", scheme="https"), [], b"{}", T
                )
                assert (status, body) == (200, b"secret")
            assert len(server.peers) == 1
            assert server.requests[0].get("host") == [f"127.0.0.1:{server.port}"]
            assert made  # the caller's context was used
    finally:
        pool.close()


async def test_an_untrusted_certificate_is_a_connect_error(
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    pool = ConnectionPool(ssl_context=ssl.create_default_context)  # the system's trust only
    try:
        async with serving(answering(OK), server_context) as server:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await get(pool, server.url(scheme="https"))
    finally:
        pool.close()


# ----------------------------------------------------------------------------- the public path


async def test_an_openai_call_answered_chunked_goes_through_the_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("llmkernel_openai")
    from llmkernel.kernel import Kernel

    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("LLMKERNEL_CONNECTIONS_TEST_KEY", "sk-test")
    completion = json.dumps(
        {
            "id": "c",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "chunked ok", "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        }
    ).encode()
    wire = b"".join(
        f"{len(part):x}\r\n".encode() + part + b"\r\n"
        for part in (completion[:7], completion[7:60], completion[60:])
    )

    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )
            await peer.trickle(wire[:40], pause=0)
            await peer.send(wire[40:])
            await asyncio.sleep(0.01)
            await peer.send(b"0\r\n\r\n")

    async with serving(handler) as server:
        kernel = Kernel.from_config(
            {
                "providers": {
                    "f": {
                        "type": "openai",
                        "base_url": server.url("/v1"),
                        "api_key_env": "LLMKERNEL_CONNECTIONS_TEST_KEY",
                    }
                },
                "retry": {"attempts": 1, "timeout": 10},
            }
        )
        async with kernel:
            for _ in range(2):
                response = await kernel.achat(model="f/gpt-4o-mini", messages="hi")
                assert response.text == "chunked ok"
        assert len(server.peers) == 1
        request = server.requests[0]
        assert request.line == "POST /v1/chat/completions HTTP/1.1"
        # the kernel's own connections write the host header first, in lower case
        assert request.headers[0] == ("host", f"127.0.0.1:{server.port}")
        assert request.get("authorization") == ["Bearer sk-test"]
        assert json.loads(request.body)["model"] == "gpt-4o-mini"
