"""HTTP/1.1 connections kept alive for whole-body exchanges: a request out, its answer
read whole.

``HTTPProvider.send_json`` (every non-streamed chat and embedding call) needs no
more than that: a status, headers and a body. aiohttp's client spends most of a
call to a fast upstream on machinery this exchange never uses (request and
response objects, traces, cookie handling, per-request timers, payload
registries); on asyncio's protocols directly the same exchange costs a third as
much (docs/performance.md, "the kernel's own connections"). Streams and proxied
requests stay on aiohttp.

What it does: ``http`` and ``https`` (TLS through the loop, with the caller's
context), keep-alive with an idle expiry, a bound on open connections with a pool
timeout, responses framed by ``Content-Length``, chunked transfer coding or the
connection's end, informational (1xx) answers skipped, ``Connection: close`` and
HTTP/1.0 honoured, one retry on a fresh connection when a reused one turns out
closed before any byte of the answer came back (the server's idle close racing the
request). The body is returned still encoded: the caller's ``httpx.Response``
decodes it. Failures are httpx's exceptions (``ConnectError``, ``ConnectTimeout``,
``ReadTimeout``, ``PoolTimeout``, ``RemoteProtocolError``, ``ReadError``,
``LocalProtocolError``, ``UnsupportedProtocol``), as on httpx's own transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlsplit

import httpx

__all__ = ["ConnectionPool"]

Answer = tuple[int, str, tuple[tuple[bytes, bytes], ...], bytes]

_MAX_HEAD = 64 * 1024  # a response's status line and headers
_UNTIL_CLOSE = -2
_CHUNKED = -1
_NO_BODY_STATUS = frozenset({204, 304})


class _Stale(Exception):
    """A reused connection was closed before any byte of the answer arrived."""


class _Target:
    """What a URL means on the wire: where to connect and the request line's target."""

    __slots__ = ("host", "key", "port", "prefix", "tls")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(
                f"Request URL has an unsupported protocol '{scheme}://'"
            )
        host = parts.hostname
        if not host:
            raise httpx.UnsupportedProtocol(f"Request URL is missing a host: {url!r}")
        self.tls = scheme == "https"
        default = 443 if self.tls else 80
        try:
            port = parts.port or default
        except ValueError:
            raise httpx.UnsupportedProtocol(f"Request URL has an invalid port: {url!r}") from None
        self.host = host
        self.port = port
        self.key = (scheme, host, port)
        shown = f"[{host}]" if ":" in host else host
        authority = shown if port == default else f"{shown}:{port}"
        target = parts.path or "/"
        if parts.query:
            target = f"{target}?{parts.query}"
        for char in target:
            if char in " \r\n" or ord(char) > 0x7E or ord(char) < 0x21:
                raise httpx.LocalProtocolError(f"the request target {target!r} is not encoded")
        self.prefix = f" {target} HTTP/1.1\r\nhost: {authority}\r\n"


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one exchange at a time."""

    def __init__(self, pool: ConnectionPool, key: tuple[str, str, int], generation: int) -> None:
        self.pool = pool
        self.key = key
        self.generation = generation
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[Answer] | None = None
        self.head: tuple[int, str, tuple[tuple[bytes, bytes], ...]] | None = None
        self.remaining = 0  # body bytes still to come, or _CHUNKED / _UNTIL_CLOSE
        self.chunks: list[bytes] = []
        self.chunk_left = -1  # bytes of the current chunk still to read (-1: a size line)
        self.no_body = False  # the request was HEAD
        self.reusable = False
        self.received = False
        self.closed = False
        self.idle_since = 0.0
        self.last_data = 0.0
        self.read_timeout: float | None = None
        self.timer: asyncio.TimerHandle | None = None

    # -------------------------------------------------------------- asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is None:
            self.pool._lost(self)
            return
        if waiter.done():
            return
        if self.head is not None and self.remaining == _UNTIL_CLOSE:
            self._finish(bytes(self.buffer))
            return
        self._stop_timer()
        if not self.received:
            waiter.set_exception(_Stale())
        elif exc is not None:
            waiter.set_exception(httpx.ReadError(f"{type(exc).__name__}: {exc}"))
        else:
            waiter.set_exception(
                httpx.RemoteProtocolError(
                    "the server closed the connection before the answer was complete"
                )
            )

    def eof_received(self) -> bool:
        return False  # the transport closes itself; connection_lost follows

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():  # bytes nobody asked for: not reusable
            self.reusable = False
            self._close()
            return
        self.received = True
        self.buffer += data
        if self.timer is not None:
            self.last_data = self.pool._loop_time()
        try:
            self._advance()
        except httpx.RemoteProtocolError as exc:
            self._stop_timer()
            self._close()
            if not waiter.done():
                waiter.set_exception(exc)

    # -------------------------------------------------------------- the answer

    def _advance(self) -> None:
        buffer = self.buffer
        while self.head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    raise httpx.RemoteProtocolError("the response's headers are too long")
                return
            head = bytes(buffer[:end])
            del buffer[: end + 4]
            self._read_head(head)
        remaining = self.remaining
        if remaining >= 0:
            if len(buffer) < remaining:
                return
            if len(buffer) == remaining:
                body = bytes(buffer)
                buffer.clear()
            else:  # more than the answer: nothing else was asked for
                body = bytes(buffer[:remaining])
                del buffer[:remaining]
                self.reusable = False
            self._finish(body)
        elif remaining == _CHUNKED:
            self._advance_chunks()

    def _read_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        status_line = lines[0]
        version = status_line[:9]
        if version not in (b"HTTP/1.1 ", b"HTTP/1.0 ") or len(status_line) < 12:
            raise httpx.RemoteProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        try:
            status = int(status_line[9:12])
        except ValueError:
            raise httpx.RemoteProtocolError(
                f"not an HTTP/1.x status line: {status_line[:80]!r}"
            ) from None
        reason = status_line[13:].decode("latin-1")
        headers = []
        length: bytes | None = None
        chunked = False
        connection = b""
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name[-1:] in b" \t" or name[:1] in b" \t":
                raise httpx.RemoteProtocolError(f"malformed response header {line[:80]!r}")
            value = value.strip(b" \t")
            headers.append((name, value))
            lower = name.lower()
            if lower == b"content-length":
                if length is not None and length != value:
                    raise httpx.RemoteProtocolError("the response has conflicting Content-Length")
                length = value
            elif lower == b"transfer-encoding":
                chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
            elif lower == b"connection":
                connection = value.lower()
        if 100 <= status < 200 and status != 101:
            return  # informational: the real answer follows
        self.head = (status, reason, tuple(headers))
        if version == b"HTTP/1.1 ":
            self.reusable = b"close" not in connection
        else:
            self.reusable = b"keep-alive" in connection
        if status == 101:  # switching protocols: not HTTP any more
            self.remaining = 0
            self.reusable = False
        elif self.no_body or status in _NO_BODY_STATUS:
            self.remaining = 0
        elif chunked:
            self.remaining = _CHUNKED
            self.chunks = []
            self.chunk_left = -1
        elif length is not None:
            if not length.isdigit():
                raise httpx.RemoteProtocolError(f"invalid Content-Length {length[:40]!r}")
            self.remaining = int(length)
        else:
            self.remaining = _UNTIL_CLOSE
            self.reusable = False

    def _advance_chunks(self) -> None:
        buffer = self.buffer
        at = 0
        while True:
            if self.chunk_left < 0:  # a size line
                end = buffer.find(b"\r\n", at)
                if end < 0:
                    if len(buffer) - at > 4096:
                        raise httpx.RemoteProtocolError("a chunk size line is too long")
                    break
                size_text = bytes(buffer[at:end]).split(b";", 1)[0].strip()
                if not size_text or size_text.strip(b"0123456789abcdefABCDEF"):
                    # hex digits only: int() would take "-2", "+2", "0x2" or "2_0"
                    raise httpx.RemoteProtocolError(f"invalid chunk size {size_text[:40]!r}")
                size = int(size_text, 16)
                if size == 0:  # the last chunk, then trailers up to an empty line
                    if buffer[end + 2 : end + 4] == b"\r\n":
                        done = end + 4
                    else:
                        trailers = buffer.find(b"\r\n\r\n", end + 2)
                        if trailers < 0:
                            break
                        done = trailers + 4
                    if len(buffer) > done:
                        self.reusable = False
                    buffer.clear()
                    body = b"".join(self.chunks)
                    self.chunks = []
                    self._finish(body)
                    return
                self.chunk_left = size
                at = end + 2
            elif len(buffer) - at >= self.chunk_left + 2:
                stop = at + self.chunk_left
                if buffer[stop : stop + 2] != b"\r\n":
                    raise httpx.RemoteProtocolError("a chunk does not end with CRLF")
                self.chunks.append(bytes(buffer[at:stop]))
                at = stop + 2
                self.chunk_left = -1
            else:
                break
        if at:
            del buffer[:at]

    def _finish(self, body: bytes) -> None:
        self._stop_timer()
        head = self.head
        assert head is not None
        self.head = None
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result((head[0], head[1], head[2], body))

    # -------------------------------------------------------------- timers, closing

    def arm(self, timeout: float | None) -> None:
        """A read timeout: fail when ``timeout`` passes without a byte."""
        self.read_timeout = timeout
        if timeout is not None:
            now = self.pool._loop_time()
            self.last_data = now
            self.timer = asyncio.get_running_loop().call_at(now + timeout, self._check_timer)

    def _check_timer(self) -> None:
        self.timer = None
        timeout = self.read_timeout
        waiter = self.waiter
        if timeout is None or waiter is None or waiter.done():
            return
        due = self.last_data + timeout
        loop = asyncio.get_running_loop()
        if loop.time() < due:
            self.timer = loop.call_at(due, self._check_timer)
            return
        self._close()
        waiter.set_exception(httpx.ReadTimeout(f"no data for {timeout:g}s"))

    def _stop_timer(self) -> None:
        timer = self.timer
        if timer is not None:
            self.timer = None
            timer.cancel()

    def _close(self) -> None:
        self.reusable = False
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def abort(self) -> None:
        self.reusable = False
        self._stop_timer()
        transport = self.transport
        if transport is not None:
            transport.abort()


class ConnectionPool:
    """Keep-alive HTTP/1.1 connections by scheme, host and port, for
    :meth:`exchange`. ``max_connections`` bounds the open connections (0: none);
    ``keepalive_expiry`` is how long an idle one is kept; ``ssl_context`` makes the
    TLS context at the first ``https`` request."""

    def __init__(
        self,
        *,
        max_connections: int = 512,
        keepalive_expiry: float = 30.0,
        ssl_context: Callable[[], ssl.SSLContext | bool],
    ) -> None:
        self._max = max_connections
        self._expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._targets: dict[str, _Target] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_time: Callable[[], float] = _no_loop_time
        self._generation = 0

    async def exchange(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        content: bytes | None,
        timeouts: Mapping[str, float | None],
    ) -> Answer:
        """Send one request and read its answer whole: ``(status, reason, raw
        headers, body still encoded)``. ``url`` is sent as it is (already encoded);
        ``host`` and ``content-length`` are added."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._generation < 0:
            self._adopt(loop)
        target = self._targets.get(url)
        if target is None:
            target = self._target(url)
        request = _encode(method, target, headers, content)
        for attempt in (0, 1):
            connection, reused = await self._acquire(target, timeouts, fresh=attempt == 1)
            try:
                return await self._send(connection, request, method, timeouts)
            except _Stale:
                if reused and attempt == 0:
                    continue
                raise httpx.RemoteProtocolError(
                    "the server closed the connection without sending an answer"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(
        self,
        connection: _Connection,
        request: bytes,
        method: str,
        timeouts: Mapping[str, float | None],
    ) -> Answer:
        loop = self._loop
        assert loop is not None and connection.transport is not None
        waiter: asyncio.Future[Answer] = loop.create_future()
        connection.waiter = waiter
        connection.received = False
        connection.no_body = method == "HEAD"
        connection.buffer.clear()
        connection.head = None
        try:
            connection.transport.write(request)
            connection.arm(timeouts.get("read"))
            answer = await waiter
        except BaseException:
            connection.abort()
            connection.waiter = None
            self._release(connection)
            raise
        connection.waiter = None
        self._release(connection)
        return answer

    # -------------------------------------------------------------- the pool

    def _adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        """A new start: the first exchange, a new event loop (connections made on
        another loop cannot be used on this one, in a forked child neither), or the
        first exchange after :meth:`close`. Connections of an earlier generation
        still busy are closed when their exchange ends."""
        self._idle = {}
        self._open = 0
        self._waiters = deque()
        self._loop = loop
        self._loop_time = loop.time
        self._generation = abs(self._generation) + 1

    def _target(self, url: str) -> _Target:
        target = _Target(url)
        if len(self._targets) >= 256:
            self._targets.clear()
        self._targets[url] = target
        return target

    async def _acquire(
        self, target: _Target, timeouts: Mapping[str, float | None], *, fresh: bool = False
    ) -> tuple[_Connection, bool]:
        """A connection for ``target`` (a new one if ``fresh``), and whether it was
        used before."""
        idle = None if fresh else self._idle.get(target.key)
        now = self._loop_time()
        while idle:
            connection = idle.pop()
            transport = connection.transport
            if connection.closed or transport is None or transport.is_closing():
                self._open -= 1
                continue
            if now - connection.idle_since > self._expiry:
                self._open -= 1
                connection.closed = True
                transport.close()
                continue
            return connection, True
        if self._max and self._open >= self._max and not self._evict():
            await self._wait_for_slot(timeouts.get("pool"))
            return await self._acquire(target, timeouts, fresh=fresh)
        self._open += 1
        try:
            return await self._connect(target, timeouts.get("connect")), False
        except BaseException:
            self._open -= 1
            self._wake()
            raise

    def _evict(self) -> bool:
        """Close the oldest idle connection (to another host: this one's idle list
        is empty) to make room for a new one; False when none is idle."""
        for connections in self._idle.values():
            if connections:
                connection = connections.pop(0)
                connection.closed = True
                connection._close()
                self._open -= 1
                return True
        return False

    async def _wait_for_slot(self, timeout: float | None) -> None:
        assert self._loop is not None
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except BaseException as exc:
            if not waiter.done():
                waiter.cancel()
            elif not waiter.cancelled():
                self._wake()  # woken, then cancelled or timed out before it ran: pass it on
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise httpx.PoolTimeout(
                    f"no connection free within {timeout:g}s ({self._max} open)"
                ) from None
            raise

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _connect(self, target: _Target, timeout: float | None) -> _Connection:
        loop = self._loop
        assert loop is not None
        context: ssl.SSLContext | bool | None = self._ssl_context() if target.tls else None
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self, target.key, self._generation),
                    target.host,
                    target.port,
                    ssl=context,
                    server_hostname=target.host if target.tls else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(
                f"no connection to {target.host}:{target.port} within {timeout:g}s"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise httpx.ConnectError(message) from exc
        return connection

    def _release(self, connection: _Connection) -> None:
        if connection.generation != self._generation:  # of a loop or pool gone
            connection.closed = True
            connection._close()
            return
        if connection.reusable and not connection.closed:
            connection.idle_since = self._loop_time()
            self._idle.setdefault(connection.key, []).append(connection)
        else:
            if not connection.closed:
                connection.closed = True
                connection._close()
            self._open -= 1
        self._wake()

    def _lost(self, connection: _Connection) -> None:
        """An idle connection the server closed."""
        idle = self._idle.get(connection.key)
        if idle and connection.generation == self._generation and connection in idle:
            idle.remove(connection)
            self._open -= 1
            self._wake()

    def close(self) -> None:
        """Close every idle connection; busy ones close when their exchange ends.
        The pool can still be used: it opens new connections."""
        idle, self._idle = self._idle, {}
        self._generation = -abs(self._generation)
        for connections in idle.values():
            for connection in connections:
                connection.closed = True
                with contextlib.suppress(RuntimeError):  # its event loop is closed
                    connection._close()


def _encode(
    method: str, target: _Target, headers: Sequence[tuple[str, str]], content: bytes | None
) -> bytes:
    lines = [method, target.prefix]
    for name, value in headers:
        lines.append(f"{name}: {value}\r\n")
    if content is None:
        if method in ("POST", "PUT", "PATCH"):
            lines.append("content-length: 0\r\n")
    else:
        lines.append(f"content-length: {len(content)}\r\n")
    lines.append("\r\n")
    text = "".join(lines)
    breaks = len(lines)  # one CRLF a line, two in the prefix, none after the method
    if text.count("\n") != breaks or text.count("\r") != breaks:
        raise httpx.LocalProtocolError("a request header contains a line break")
    try:
        head = text.encode("latin-1")
    except UnicodeEncodeError:
        raise httpx.LocalProtocolError("a request header is not latin-1 text") from None
    return head + content if content else head


def _no_loop_time() -> float:
    raise RuntimeError("no event loop yet")  # pragma: no cover
