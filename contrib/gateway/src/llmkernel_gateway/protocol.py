"""uvicorn's httptools protocol with the gateway's connection limits and one write
per answer.

**Limits.** uvicorn bounds the idle time between requests (``timeout_keep_alive``,
which ``llmkernel serve`` sets to ``idle_timeout``) but, on its httptools protocol,
nothing else a stranger controls before the app runs: the request line and headers
are buffered without limit and may arrive as slowly as the sender likes. Here
(:class:`ConnectionLimits`, from ``[plugin.gateway]``):

- a request head (request line and headers) over ``max_header_bytes``, or with more
  than ``max_headers`` fields, is answered ``431`` and the connection closed; what
  is buffered meanwhile stays under the limit plus one read (uvicorn reads 64 KiB to
  256 KiB at a time);
- a head that is not complete ``header_timeout`` seconds after it began (or after
  the connection opened) is answered ``408`` and the connection closed: slowloris;
- a request body that stops arriving for ``idle_timeout`` seconds is answered
  ``408`` and the connection closed;
- past ``max_connections`` open connections (per worker) a new connection is closed
  at once, before anything is read.

uvicorn's ``limit_concurrency`` is not used: it answers ``text/plain``, and the
gateway's clients get the API's JSON error for everything. For the same reason a
malformed request gets the JSON error here (``send_400_response``).

**One write per answer.** uvicorn writes the status line and headers when the app
sends ``http.response.start``, then each body part: two ``write`` system calls where
one does (on loopback a write costs tens of microseconds, a noticeable share of the
gateway's added latency). The protocol offers the app an ASGI extension,
``scope["extensions"]["llmkernel.writer"]`` (this protocol object), with
:meth:`GatewayProtocol.respond` (a whole answer in one write, without ASGI
messages), :meth:`GatewayProtocol.start_stream` (a stream's head with its first
chunk) and :meth:`GatewayProtocol.finish_stream` (a stream's end with HTTP/1.1
trailer fields, which ASGI has no message for in uvicorn). An app on another server
finds no extension and sends the messages.

Everything else is uvicorn's: parsing, keep-alive, pipelining, flow control,
``Content-Length`` checks, the shutdown. This relies on public names of uvicorn's
``HttpToolsProtocol`` (``connection_made``, ``data_received``, the parser callbacks,
``send_400_response``, ``cycle``, ``scope``, ``transport``, ``connections``,
``loop``) and of its ``RequestResponseCycle`` (``scope``, ``transport``, ``flow``,
``response_started``, ``response_complete``, ``keep_alive``, ``disconnected``,
``access_log``, ``default_headers``, ``message_event``, ``on_response``,
``waiting_for_100_continue``), the same from uvicorn 0.30 to today: the supported
range is pinned in ``pyproject.toml`` and ``nox -s gateway_protocol`` runs the
contract tests (``tests/test_protocol.py``) on its lowest and highest versions.
"""

from __future__ import annotations

import asyncio
import http
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from llmkernel import log
from llmkernel_gateway import failures, wire
from llmkernel_gateway.settings import ConnectionLimits

WRITER = "llmkernel.writer"  # the ASGI extension's key in scope["extensions"]
_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")  # what may not be in a header value
_PHRASES = {code.value: code.phrase.encode() for code in http.HTTPStatus}
_STATUS = {
    code: b"HTTP/1.1 %d %s\r\n" % (code, _PHRASES.get(code, b"")) for code in range(100, 600)
}
_WARN_EVERY = 10.0  # seconds between two "connections full" warnings


class _Held:
    """Stands in for the transport while uvicorn builds a response's bytes."""

    __slots__ = ("closing", "parts", "real")

    def __init__(self, real: Any) -> None:
        self.real = real
        self.parts: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return bool(self.real.is_closing())


def error_bytes(status: int, message: str, *, code: str | None = None) -> bytes:
    """A whole ``Connection: close`` answer with the API's error JSON."""
    kind = "invalid_request_error" if status < 500 else "api_error"
    body = wire.dumps(failures.Failure(status=status, message=message, type=kind, code=code).body())
    return b"".join(
        (
            _STATUS[status],
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        )
    )


def _limits_of(app: Any) -> ConnectionLimits:
    """The app's ``connection_limits``, through the middlewares uvicorn may wrap it in
    (each keeps the app it wraps as ``app``); the defaults when it has none."""
    for _ in range(8):
        limits = getattr(app, "connection_limits", None)
        if isinstance(limits, ConnectionLimits):
            return limits
        app = getattr(app, "app", None)
        if app is None:
            break
    return ConnectionLimits()


class GatewayProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with :class:`ConnectionLimits` and the
    ``llmkernel.writer`` extension (pass the class as uvicorn's ``http=``). The
    limits are the app's ``connection_limits`` attribute when it has one."""

    _last_warning = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = _limits_of(self.app)
        self.extensions: dict[str, Any] = {WRITER: self}
        self._in_head = True  # reading a request line and headers
        self._head_begun = False  # and some of it came
        self._head_raw = 0  # bytes received since that head began
        self._max_headers = self.limits.max_headers
        self._extra_fields = 0  # header fields past max_headers
        self._timer: asyncio.TimerHandle | None = None
        self._body_read_at = 0.0
        self._refused = False

    # ------------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            now = time.monotonic()
            if now - GatewayProtocol._last_warning > _WARN_EVERY:
                GatewayProtocol._last_warning = now
                log.warning(
                    "gateway.connections_full",
                    open=len(self.connections) - 1,
                    max_connections=self.limits.max_connections,
                )
            transport.close()
            return
        self._timer = self.loop.call_later(self.limits.header_timeout, self._expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # refused: nothing more is read
        if self._in_head:
            self._head_raw += len(data)
        super().data_received(data)
        if self._in_head:
            if self._head_raw > self.limits.max_header_bytes:
                self._refuse(431, "the request head is larger than the gateway's limit")
            elif self._timer is None and not self.transport.is_closing():
                self._timer = self.loop.call_later(self.limits.header_timeout, self._expired)
            return
        cycle = self.cycle
        if cycle is not None and cycle.more_body and not cycle.response_complete:
            self._body_read_at = self.loop.time()  # a body on its way: watch it
            if self._timer is None:
                self._timer = self.loop.call_later(self.limits.idle_timeout, self._expired)

    def send_400_response(self, msg: str) -> None:
        """A malformed request: the API's JSON error, not uvicorn's text."""
        self._cancel()
        if self.transport.is_closing():
            return
        self.transport.write(error_bytes(400, f"malformed HTTP request: {msg}"))
        self.transport.close()

    # ------------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = self.extensions
        self._in_head = self._head_begun = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) < self._max_headers:
            super().on_header(name, value)
        else:
            self._extra_fields += 1  # counted, never kept

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        limits = self.limits
        extra, raw = self._extra_fields, self._head_raw
        self._in_head = self._head_begun = False
        self._head_raw = self._extra_fields = 0
        self._cancel()
        # the bytes received meanwhile bound the head's size: counted only past the limit
        if extra or (raw > limits.max_header_bytes and self._head_size() > limits.max_header_bytes):
            self._refuse(
                431,
                f"the request has {len(self.headers) + extra} header fields"
                if extra
                else "the request head is larger than the gateway's limit",
            )
            self._refused = True  # the rest of this request is parsed and dropped
            return
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope and not self.parser.should_keep_alive():
            cycle.keep_alive = False  # the client's "Connection: close" (uvicorn 0.30 ignores it)

    def _head_size(self) -> int:
        return len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        super().on_message_complete()
        if self._timer is not None and not self._in_head:
            self._cancel()

    # ------------------------------------------------------------------ limits

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _refuse(self, status: int, message: str) -> None:
        self._cancel()
        transport = self.transport
        if transport.is_closing():
            return
        limits = self.limits
        detail = (
            f" ({limits.max_header_bytes} bytes, {limits.max_headers} fields: "
            "[plugin.gateway] max_header_bytes, max_headers)"
            if status == 431
            else ""
        )
        transport.write(error_bytes(status, message + detail))
        transport.close()

    def _expired(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._in_head:
            if self._head_begun or self._head_raw:
                self._refuse(
                    408,
                    f"the request head did not arrive within {self.limits.header_timeout:g} s "
                    "([plugin.gateway] header_timeout)",
                )
            else:
                self.transport.close()  # nothing sent at all: nothing to answer
            return
        cycle = self.cycle
        if cycle is None or not cycle.more_body or cycle.response_complete:
            return
        idle = self.loop.time() - self._body_read_at
        if idle < self.limits.idle_timeout:  # data came meanwhile: wait for the rest
            self._timer = self.loop.call_later(self.limits.idle_timeout - idle, self._expired)
        elif cycle.response_started:
            self.transport.close()
        else:
            self._refuse(
                408,
                f"no part of the request body arrived for {self.limits.idle_timeout:g} s "
                "([plugin.gateway] idle_timeout)",
            )

    # ------------------------------------------------------------------ the writer extension

    def _cycle(self, scope: MutableMapping[str, Any]) -> Any:
        """The cycle answering ``scope`` (``None`` for a pipelined request not yet
        current, or after a WebSocket upgrade)."""
        cycle = self.cycle
        return cycle if cycle is not None and cycle.scope is scope else None

    def respond(
        self,
        scope: MutableMapping[str, Any],
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        *,
        close: bool = False,
    ) -> bool:
        """A whole response (``content-length`` is added) in one write, without the
        ASGI messages: what ``send`` of a start and of one final body part does, for
        the gateway's own headers (lower-case names, no ``connection``: ``close``
        ends the connection after it). False when it cannot (another request's turn,
        a response already started, writes paused, uvicorn's access log on): then
        send the messages. A header value with a line break raises ``ValueError``
        before anything is written."""
        cycle = self._cycle(scope)
        if cycle is None or cycle.response_started or cycle.flow.write_paused or cycle.access_log:
            return False
        if cycle.disconnected:
            return True
        content = [_STATUS[status]]
        for name, value in cycle.default_headers:
            content += (name.lower(), b": ", value, b"\r\n")
        for name, value in headers:
            if _VALUE.search(value):
                raise ValueError(f"invalid value of the HTTP header {name.decode()!r}")
            content += (name, b": ", value, b"\r\n")
        content.append(b"content-length: %d\r\n" % len(body))
        keep_alive = cycle.keep_alive = cycle.keep_alive and not close
        if not keep_alive:
            content.append(b"connection: close\r\n")
        content.append(b"\r\n")
        if scope["method"] != "HEAD":
            content.append(body)
        cycle.response_started = True
        cycle.waiting_for_100_continue = False
        cycle.transport.write(b"".join(content))
        cycle.response_complete = True
        cycle.message_event.set()
        if not keep_alive:
            cycle.transport.close()
        cycle.on_response()
        return True

    async def start_stream(
        self,
        scope: MutableMapping[str, Any],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
        start: MutableMapping[str, Any],
        first: MutableMapping[str, Any],
    ) -> None:
        """``send(start)`` then ``send(first)`` (a body part), written at once:
        uvicorn frames both, their writes are held and go out together."""
        cycle = self._cycle(scope)
        if cycle is None or cycle.response_started or cycle.flow.write_paused:
            await send(start)
            await send(first)
            return
        real = cycle.transport
        held = _Held(real)
        cycle.transport = held
        try:
            await send(start)
            await send(first)
        finally:
            cycle.transport = real
        if held.parts and not cycle.disconnected:
            real.write(b"".join(held.parts))
        if held.closing:
            real.close()

    async def finish_stream(
        self,
        scope: MutableMapping[str, Any],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
        last: MutableMapping[str, Any],
        trailers: list[tuple[bytes, bytes]],
    ) -> None:
        """``send(last)`` (the final body part of a chunked answer) with ``trailers``
        after the last chunk (HTTP/1.1 trailer fields; the head should announce them
        in ``Trailer``). Without the chunked end uvicorn writes (a HEAD, say), as
        ``send(last)`` alone."""
        cycle = self._cycle(scope)
        if cycle is None or not cycle.response_started or cycle.flow.write_paused:
            await send(last)
            return
        real = cycle.transport
        held = _Held(real)
        cycle.transport = held
        try:
            await send(last)
        finally:
            cycle.transport = real
        data = b"".join(held.parts)
        if data.endswith(b"0\r\n\r\n") and all(not _VALUE.search(v) for _, v in trailers):
            fields = b"".join(name + b": " + value + b"\r\n" for name, value in trailers)
            data = data[:-2] + fields + b"\r\n"
        if data and not cycle.disconnected:
            real.write(data)
        if held.closing:
            real.close()


__all__ = ["WRITER", "GatewayProtocol", "error_bytes"]
