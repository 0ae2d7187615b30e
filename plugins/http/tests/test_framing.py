"""Issue 26 point 11: answers framed loosely or maliciously, sent as exact bytes by a
raw server on 127.0.0.1 to the kernel's own connections
(``llmkernel_http.connections``), and to httpx and aiohttp on the same bytes.

The kernel refuses every one of them; where httpx (h11) or aiohttp (its llhttp
parser) refuses a case too, the test checks they still do, so the claim "no looser
than either" stays checked as they change."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import pytest

from llmkernel_http.connections import ConnectionPool

CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"

#: name -> (the answer's bytes, what the server does next, (httpx refuses, aiohttp refuses))
CASES: dict[str, tuple[bytes, str, tuple[bool, bool]]] = {
    "two-transfer-encodings": (
        CHUNKED + b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        "hold",
        (True, False),
    ),
    "transfer-encoding-list": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        "hold",
        (True, False),
    ),
    "transfer-encoding-and-content-length": (
        CHUNKED + b"Content-Length: 2\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        "hold",
        (False, True),
    ),
    "chunk-size-of-4000-digits": (
        CHUNKED + b"\r\n" + b"0" * 3999 + b"2\r\nok\r\n0\r\n\r\n",
        "hold",
        (True, False),
    ),
    "chunk-size-of-4000-digits-overflowing": (
        CHUNKED + b"\r\n" + b"f" * 4000 + b"\r\nok\r\n0\r\n\r\n",
        "hold",
        (True, True),
    ),
    "unbounded-trailers": (CHUNKED + b"\r\n2\r\nok\r\n0\r\n", "trailers", (True, True)),
    "nul-in-a-header-value": (
        b"HTTP/1.1 200 OK\r\nx-a: a\x00b\r\nContent-Length: 2\r\n\r\nok",
        "hold",
        (True, True),
    ),
    "control-character-in-a-header-value": (
        b"HTTP/1.1 200 OK\r\nx-a: a\x07b\r\nContent-Length: 2\r\n\r\nok",
        "hold",
        (False, False),
    ),
    "nul-in-a-header-name": (
        b"HTTP/1.1 200 OK\r\nx\x00a: b\r\nContent-Length: 2\r\n\r\nok",
        "hold",
        (True, True),
    ),
    "two-spaces-in-the-status-line": (
        b"HTTP/1.1  200 OK\r\nContent-Length: 2\r\n\r\nok",
        "hold",
        (True, True),
    ),
    "two-digit-status": (b"HTTP/1.1 20\r\nContent-Length: 2\r\n\r\nok", "hold", (True, True)),
    "reset-close-delimited-body": (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\npart of it",
        "reset",
        (True, False),
    ),
    "one-header-of-100-kb": (
        b"HTTP/1.1 200 OK\r\nx-big: " + b"v" * 100_000 + b"\r\nContent-Length: 2\r\n\r\nok",
        "hold",
        (False, True),
    ),
    "20000-headers": (
        b"HTTP/1.1 200 OK\r\n" + b"x-h: v\r\n" * 20_000 + b"Content-Length: 2\r\n\r\nok",
        "hold",
        (True, True),
    ),
    "endless-header": (b"HTTP/1.1 200 OK\r\nx-big: ", "endless", (True, True)),
    "folded-header": (
        b"HTTP/1.1 200 OK\r\nx-a: 1\r\n folded\r\nContent-Length: 2\r\n\r\nok",
        "hold",
        (False, False),
    ),
    "conflicting-content-lengths": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        "hold",
        (True, True),
    ),
    "bare-lf-line-ends": (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", "hold", (False, False)),
    "http-2-status-line": (b"HTTP/2 200 OK\r\nContent-Length: 2\r\n\r\nok", "hold", (True, True)),
}


@contextlib.asynccontextmanager
async def raw_server(wire: bytes, then: str) -> AsyncIterator[str]:
    """Reads one request, answers ``wire``, then holds the connection open until the
    client closes it (``hold``), sends a TCP reset (``reset``), closes (``close``),
    or keeps sending trailer lines or header bytes (``trailers``, ``endless``)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            writer.write(wire)
            await writer.drain()
            if then == "reset":
                await asyncio.sleep(0.05)
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01" + b"\x00" * 7)
                writer.transport.abort()
                return
            if then == "close":
                await asyncio.sleep(0.05)
                return
            if then in ("trailers", "endless"):
                piece = b"x-t: " + b"v" * 1000 + b"\r\n" if then == "trailers" else b"v" * 1000
                for _ in range(20_000):  # 20 MB, unless the client gives up first
                    writer.write(piece)
                    await writer.drain()
            await reader.read()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/chat"
    finally:
        server.close()


async def ours(url: str) -> Any:
    pool = ConnectionPool(ssl_context=lambda: False)
    try:
        async with asyncio.timeout(10):
            return (await pool.exchange("POST", url, [], b"{}", {"read": 5.0}))[3]
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        return exc
    finally:
        pool.close()


async def with_httpx(url: str) -> Any:
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            return (await client.post(url, content=b"{}")).content
    except httpx.HTTPError as exc:
        return exc


async def with_aiohttp(url: str) -> Any:
    try:
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(url, data=b"{}") as response,
        ):
            return await response.read()
    except aiohttp.ClientError as exc:
        return exc


@pytest.mark.parametrize("case", list(CASES))
async def test_the_kernel_refuses_what_httpx_or_aiohttp_refuse_and_more(case: str) -> None:
    wire, then, (httpx_refuses, aiohttp_refuses) = CASES[case]
    async with raw_server(wire, then) as url:
        got = await ours(url)
        assert isinstance(got, httpx.RemoteProtocolError | httpx.ReadError), got
    if httpx_refuses:
        async with raw_server(wire, then) as url:
            assert isinstance(await with_httpx(url), httpx.HTTPError)
    if aiohttp_refuses:
        async with raw_server(wire, then) as url:
            assert isinstance(await with_aiohttp(url), aiohttp.ClientError)


async def test_a_reset_close_delimited_body_is_not_taken_as_complete() -> None:
    # the body ends with the connection: a reset is a failure, a clean close the end
    async with raw_server(CASES["reset-close-delimited-body"][0], "reset") as url:
        got = await ours(url)
    assert isinstance(got, httpx.ReadError) and "reset" in str(got).lower()
    async with raw_server(CASES["reset-close-delimited-body"][0], "close") as url:
        assert await ours(url) == b"part of it"
        assert await with_httpx(url) == b"part of it"


@pytest.mark.parametrize("case", ["unbounded-trailers", "endless-header"])
async def test_endless_framing_is_refused_at_its_bound_not_at_a_timeout(case: str) -> None:
    """The client gives up on the bound (2 KiB of trailers, 64 KiB of head), long
    before the 20 MB the server would send or the 5 s read timeout."""
    wire, then, _ = CASES[case]
    async with raw_server(wire, then) as url:
        loop = asyncio.get_running_loop()
        started = loop.time()
        got = await ours(url)
        sent = loop.time() - started
    assert isinstance(got, httpx.RemoteProtocolError)
    assert "too long" in str(got) or "over 65536 bytes" in str(got)
    assert sent < 5
