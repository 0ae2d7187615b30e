"""HTTP/1.1 connections kept alive for whole-body exchanges: a request out, its answer
read whole.

``HTTPProvider.send_json`` (every non-streamed chat and embedding call) needs no
more than that: a status, headers and a body. aiohttp's client spends most of a
call to a fast upstream on machinery this exchange never uses (request and response
objects, traces, cookie handling, per-request timers, payload registries); on
asyncio's protocols directly the same exchange costs a third as much
(docs/performance.md, "The kernel's own connections"). Streams and proxied requests
stay on aiohttp.

Answers are parsed by llhttp through httptools (the parser of uvicorn and Node.js):
the status line, headers, ``Content-Length``, chunked coding and its trailers,
informational (1xx) answers and keep-alive (``Connection``, HTTP/1.0) are its, in
its strict mode. On top of it this module refuses what httpx's parser (h11) refuses
and llhttp lets through (a second ``Transfer-Encoding`` header, a coding other than
``chunked``, a version other than HTTP/1.0 and 1.1), and keeps only what a parser
does not do:

* connections reused per scheme, host and port, with an idle expiry; a bound on
  open connections, with a pool timeout; TLS through the loop, with the caller's
  context;
* the read timeout (the longest silence), and cancellation (the connection is
  dropped);
* bounds on what an answer can make it hold: 64 KiB of status line and headers,
  ``max_body`` bytes of body (a ``Content-Length`` above it is refused before any of
  the body arrives), and 2 KiB of framing beyond the least the answer needs (chunk
  extensions, zeros padding a chunk size, trailers, extra whitespace: a 4,000-digit
  chunk size is refused, as by h11);
* a request is written once. A kept connection seen closed before writing (by
  the loop, or by a zero-timeout ``poll`` of its socket just before) is replaced by
  another; once the request is written, a connection that ends without
  an answer is an error (the server may have read the request, so only the kernel's
  retry policy may send it again).

The request line and headers are written here (httptools parses, it does not
write), refused if a header holds a line break or NUL. The body is returned still
encoded: the caller's ``httpx.Response`` decodes it. Failures are httpx's exceptions
(``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``, ``PoolTimeout``,
``RemoteProtocolError``, ``ReadError``, ``LocalProtocolError``,
``UnsupportedProtocol``), as on httpx's own transport, and
:class:`~llmkernel_http.body.UnreadableBody` for a body over its bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import ssl
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlsplit

import httptools
import httpx

from llmkernel_http.body import MAX_RESPONSE_BYTES, UnreadableBody, too_large

__all__ = ["MAX_HEAD", "ConnectionPool"]

Answer = tuple[int, str, tuple[tuple[bytes, bytes], ...], bytes]

#: The most bytes of status line and headers an answer may have.
MAX_HEAD = 64 * 1024
#: Bytes an answer may hold beyond the least its head and chunks need: chunk
#: extensions, padded chunk sizes, trailers, extra whitespace, in all.
_SLACK = 2048
_NO_BODY_STATUS = (204, 304)


class _Answer:
    """One answer as llhttp reads it (httptools calls these methods), within bounds."""

    __slots__ = (
        "body",
        "chunk_start",
        "chunked",
        "complete",
        "extra",
        "fed",
        "head",
        "headers",
        "informational",
        "keep_alive",
        "least",
        "length",
        "limit",
        "no_body",
        "parser",
        "reason",
        "size",
        "status",
        "until_close",
    )

    def __init__(self, limit: int, no_body: bool) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.limit = limit
        self.no_body = no_body  # the request was HEAD
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.size = 0  # body bytes so far
        self.fed = 0  # bytes handed to the parser
        self.least = 0  # the fewest bytes the head and chunks read so far can take
        self.chunk_start = 0  # the body's size when the current chunk began
        self.length: bytes | None = None
        self.chunked = False
        self.head = False  # the final answer's head is read
        self.informational = False
        self.until_close = False  # the body ends with the connection
        self.complete = False
        self.keep_alive = False
        self.extra = False  # bytes came after the answer: the connection is not reusable

    def feed(self, data: bytes | memoryview) -> None:
        """Parse ``data``; raises ``httpx.RemoteProtocolError`` for a malformed answer
        and :class:`UnreadableBody` past the body's bound."""
        if not self.head:
            room = MAX_HEAD - self.fed
            if len(data) > room:  # the parser sees at most MAX_HEAD bytes of head
                view = memoryview(data)
                self.fed += room
                self._parse(view[:room])
                if not self.head:
                    raise httpx.RemoteProtocolError(
                        f"the answer's status line and headers are over {MAX_HEAD} bytes"
                    )
                data = view[room:]
        self.fed += len(data)
        self._parse(data)
        if self.head and self.fed - self.size - self.least > _SLACK:
            raise httpx.RemoteProtocolError(
                "the answer's chunk framing or trailers are too long "
                f"({self.fed - self.size - self.least} bytes more than needed)"
            )

    def _parse(self, data: bytes | memoryview) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            return  # 101: the answer ended with its head
        except httptools.HttpParserCallbackError as exc:
            refused = exc.__context__  # what one of the methods below raised
            if isinstance(refused, httpx.RemoteProtocolError | UnreadableBody):
                raise refused from None
            raise  # pragma: no cover - a bug of ours
        except httptools.HttpParserError as exc:
            if self.complete:  # after the answer (data after "Connection: close")
                self.extra = True
                return
            raise httpx.RemoteProtocolError(f"malformed answer: {exc}") from None

    # ------------------------------------------------------------ httptools' callbacks

    def on_message_begin(self) -> None:
        if self.complete:  # a second answer nobody asked for
            self.extra = True

    def on_status(self, reason: bytes) -> None:
        self.reason += reason
        self.least += len(reason)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head:
            return  # a trailer (bounded with the framing): not a header of the answer
        self.least += len(name) + len(value) + 3  # name:value CRLF
        self.headers.append((name, value.rstrip(b" \t")))
        size = len(name)
        if size == 17 and name.lower() == b"transfer-encoding":
            # as h11: one Transfer-Encoding, and it is "chunked" (llhttp takes two,
            # and reads a body with any other coding to the connection's end)
            if self.chunked:
                raise httpx.RemoteProtocolError("the answer has two Transfer-Encoding headers")
            if value.strip(b" \t").lower() != b"chunked":
                raise httpx.RemoteProtocolError(
                    f"unsupported Transfer-Encoding {value[:40]!r} (only chunked)"
                )
            self.chunked = True
        elif size == 14 and name.lower() == b"content-length":
            self.length = value  # llhttp refuses a second one, and anything not digits

    def on_headers_complete(self) -> None:
        parser = self.parser
        status = parser.get_status_code()
        self.least += 16  # "HTTP/1.1 200 " CRLF, and the head's last CRLF
        if status < 200 and status != 101:  # informational: the real answer follows
            self.informational = True
            self.reason, self.headers, self.length, self.chunked = b"", [], None, False
            return
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise httpx.RemoteProtocolError(f"HTTP/{version} is not HTTP/1.x")
        self.status = status
        self.head = True
        if status == 101 or self.no_body:
            self.complete = True
            self.keep_alive = status != 101 and parser.should_keep_alive()
        elif status in _NO_BODY_STATUS:
            return
        elif self.length is not None:
            if int(self.length) > self.limit:
                raise too_large("the answer's Content-Length", self.length.decode(), self.limit)
        elif not self.chunked:
            self.until_close = True

    def on_body(self, body: bytes) -> None:
        if self.complete:
            self.extra = True  # a body after a HEAD's answer
            return
        self.size += len(body)
        if self.size > self.limit:
            raise too_large("the answer's body", f"more than {self.limit}", self.limit)
        self.body.append(body)

    def on_chunk_header(self) -> None:
        self.chunk_start = self.size

    def on_chunk_complete(self) -> None:
        size = self.size - self.chunk_start
        self.least += len(f"{size:x}") + 4  # the size line's CRLF, the data's CRLF

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
        elif not self.complete:
            self.complete = True
            self.keep_alive = self.parser.should_keep_alive()

    def result(self) -> Answer:
        return (
            self.status,
            self.reason.decode("latin-1"),
            tuple(self.headers),
            self.body[0] if len(self.body) == 1 else b"".join(self.body),
        )


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
        self.answer: _Answer | None = None
        self.waiter: asyncio.Future[Answer] | None = None
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
        self._stop_timer()
        if exc is not None and not isinstance(exc, OSError):
            # not a network failure: raised into a transport's callback (by a signal
            # handler, say), and the caller's to see as it is
            waiter.set_exception(exc)
            return
        answer = self.answer
        if answer is not None and answer.until_close and exc is None:
            waiter.set_result(answer.result())  # the connection's end ends the body
            return
        if not self.received:
            # the request was written: the server may have read it, so it is not sent again
            reason = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
            waiter.set_exception(
                httpx.RemoteProtocolError(
                    f"the server closed the connection without sending an answer{reason}"
                )
            )
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
        answer = self.answer
        if answer is None or waiter is None or waiter.done():  # bytes nobody asked for
            self.shut()
            return
        self.received = True
        if self.timer is not None:
            self.last_data = self.pool._loop_time()
        try:
            answer.feed(data)
        except (httpx.RemoteProtocolError, UnreadableBody) as exc:
            self._stop_timer()
            self.shut()
            waiter.set_exception(exc)
            return
        if answer.complete:
            self._stop_timer()
            self.reusable = answer.keep_alive and not answer.extra
            waiter.set_result(answer.result())

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
        self.shut()
        waiter.set_exception(httpx.ReadTimeout(f"no data for {timeout:g}s"))

    def _stop_timer(self) -> None:
        timer = self.timer
        if timer is not None:
            self.timer = None
            timer.cancel()

    def shut(self) -> None:
        """Close the connection (it is not reused)."""
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
    TLS context at the first ``https`` request; ``max_body`` is the default bound
    on an answer's body."""

    def __init__(
        self,
        *,
        max_connections: int = 512,
        keepalive_expiry: float = 30.0,
        ssl_context: Callable[[], ssl.SSLContext | bool],
        max_body: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self._max = max_connections
        self._expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._max_body = max_body
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._targets: dict[str, _Target] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_time: Callable[[], float] = _no_loop_time
        self._generation = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the pool's connections belong to (the last one used)."""
        return self._loop

    async def exchange(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        content: bytes | None,
        timeouts: Mapping[str, float | None],
        *,
        max_body: int | None = None,
    ) -> Answer:
        """Send one request and read its answer whole: ``(status, reason, raw
        headers, body still encoded)``. ``url`` is sent as it is (already encoded);
        ``host`` and ``content-length`` are added. A body over ``max_body`` bytes
        (default: the pool's) raises :class:`~llmkernel_http.body.UnreadableBody`."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._generation < 0:
            self._adopt(loop)
        target = self._targets.get(url)
        if target is None:
            target = self._target(url)
        request = _encode(method, target, headers, content)
        connection = await self._acquire(target, timeouts)
        waiter: asyncio.Future[Answer] = loop.create_future()
        connection.waiter = waiter
        reading = connection.answer = _Answer(
            self._max_body if max_body is None else max_body, method == "HEAD"
        )
        connection.received = False
        assert connection.transport is not None
        try:
            connection.transport.write(request)
            connection.arm(timeouts.get("read"))
            answer = await waiter
        except BaseException:
            connection.abort()
            raise
        finally:
            # the parser holds the answer's methods: a cycle, left for the reference
            # count to free rather than the cyclic collector (which, under many
            # concurrent calls, would scan them all)
            del reading.parser
            connection.waiter = connection.answer = None
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

    async def _acquire(self, target: _Target, timeouts: Mapping[str, float | None]) -> _Connection:
        """An open connection for ``target``: an idle one not seen closed, else a new one."""
        idle = self._idle.get(target.key)
        now = self._loop_time()
        while idle:
            connection = idle.pop()
            transport = connection.transport
            if connection.closed or transport is None or transport.is_closing():
                self._open -= 1
                continue
            if now - connection.idle_since > self._expiry or _readable(transport):
                self._open -= 1
                connection.closed = True
                transport.close()
                continue
            return connection
        if self._max and self._open >= self._max and not self._evict():
            await self._wait_for_slot(timeouts.get("pool"))
            return await self._acquire(target, timeouts)
        self._open += 1
        try:
            return await self._connect(target, timeouts.get("connect"))
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
                connection.shut()
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
            connection.shut()
            return
        if connection.reusable and not connection.closed:
            connection.idle_since = self._loop_time()
            self._idle.setdefault(connection.key, []).append(connection)
        else:
            if not connection.closed:
                connection.closed = True
                connection.shut()
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
                    connection.shut()


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
    if text.count("\n") != breaks or text.count("\r") != breaks or "\0" in text:
        raise httpx.LocalProtocolError("a request header contains a line break or NUL")
    try:
        head = text.encode("latin-1")
    except UnicodeEncodeError:
        raise httpx.LocalProtocolError("a request header is not latin-1 text") from None
    return head + content if content else head


def _readable(transport: asyncio.Transport) -> bool:
    """Whether an idle connection has something to read that the loop has not seen
    yet: the server's close (or bytes nobody asked for). Either way it is not used:
    a request written on it could reach a server that is closing it."""
    sock = transport.get_extra_info("socket")
    if sock is None or _poll is None:  # pragma: no cover - no poll(2) on this platform
        return False
    poller = _poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


_poll = getattr(select, "poll", None)


def _no_loop_time() -> float:
    raise RuntimeError("no event loop yet")  # pragma: no cover
