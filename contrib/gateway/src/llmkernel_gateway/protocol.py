"""uvicorn's httptools protocol, writing a response's head with its first body part.

uvicorn writes the status line and headers as soon as the app sends
``http.response.start``, then each body part: two ``write`` system calls for every
answer, where one does. Here the head is held until the first
``http.response.body`` and both go out in one write (the gateway sends that body
right after the start, for streams too). On a loopback connection a write costs
tens of microseconds, a noticeable share of the gateway's added latency.

The gateway's whole answers go further: :meth:`CoalescingCycle.respond` writes the
head and body in one write without ASGI messages at all (what ``send`` of a start and
of one final body part would do); streams, and answers ``respond`` declines, take
``send``.

Everything else is uvicorn's: parsing, keep-alive, pipelining, flow control,
``Content-Length`` checks, the shutdown. ``RequestResponseCycle.send`` is wrapped and
``respond`` added (they rely on the cycle's ``transport``, ``response_started``,
``response_complete``, ``keep_alive``, ``flow``, ``message_event``, ``on_response``
and ``disconnected``, uvicorn's since 0.13, and on its ``STATUS_LINE`` and
``HEADER_VALUE_RE``); the gateway's tests run every route through them.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import (
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)


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


class CoalescingCycle(RequestResponseCycle):
    """A cycle whose response head waits for the first body part."""

    _head: bytes | None = None

    async def send(self, message: Any) -> None:
        kind = message["type"]
        if kind == "http.response.start" and not self.response_started and not self.disconnected:
            self._head = b"".join((await self._captured(message)).parts)
            return
        head = self._head
        if head is None or kind != "http.response.body":
            await super().send(message)
            return
        self._head = None
        if self.disconnected:
            return
        held = await self._captured(message)
        self.transport.write(head + b"".join(held.parts))
        if held.closing:
            self.transport.close()

    def respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
        """A whole response (``content-length`` is added) in one write, without the
        ASGI messages: what ``send`` of a start and of one final body part does,
        for the gateway's own headers (lower-case names). False when it cannot
        (a response already started, writes paused, uvicorn's access log on): then
        send the messages."""
        if self.response_started or self.flow.write_paused or self.access_log:
            return False
        if self.disconnected:
            return True
        content = [STATUS_LINE[status]]
        for name, value in self.default_headers:
            content += (name.lower(), b": ", value, b"\r\n")
        for name, value in headers:
            if HEADER_VALUE_RE.search(value):
                raise RuntimeError("Invalid HTTP header value.")
            content += (name, b": ", value, b"\r\n")
        content.append(b"content-length: %d\r\n" % len(body))
        if not self.keep_alive:
            content.append(b"connection: close\r\n")
        content.append(b"\r\n")
        if self.scope["method"] != "HEAD":
            content.append(body)
        self.response_started = True  # only now: a bad header above is still a 500
        self.waiting_for_100_continue = False
        self.transport.write(b"".join(content))
        self.response_complete = True
        self.message_event.set()
        if not self.keep_alive:
            self.transport.close()
        self.on_response()
        return True

    async def _captured(self, message: Any) -> _Held:
        """uvicorn's ``send`` of ``message``, its writes (and a close) held back."""
        real = self.transport
        held = _Held(real)
        self.transport = held  # type: ignore[assignment]
        try:
            await super().send(message)
        finally:
            self.transport = real
        return held


class CoalescingProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with :class:`CoalescingCycle` cycles (pass it as
    uvicorn's ``http=``)."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if type(cycle) is RequestResponseCycle:
            cycle.__class__ = CoalescingCycle


__all__ = ["CoalescingCycle", "CoalescingProtocol"]
