"""An incremental Server-Sent Events decoder (the WHATWG event-stream format).

Handles LF, CR and CRLF line endings (Gemini frames with CRLF), multi-line ``data``,
comments (``: ping``) and events split anywhere across network chunks. Events are
yielded as soon as their blank line arrives; the body is never buffered whole, and
one event (or one line) longer than ``max_event_size`` characters (default
:data:`~llmkernel_http.body.MAX_EVENT_SIZE`) raises
:class:`~llmkernel_http.body.UnreadableBody` instead of growing without end.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import attrs

from llmkernel_http.body import MAX_EVENT_SIZE, UnreadableBody

# Only CR, LF and CRLF end a line: JSON data may hold U+2028 and friends.
_BREAK = re.compile(r"\r\n|\r|\n")


@attrs.frozen(kw_only=True)
class SSEEvent:
    """One dispatched event: ``event`` defaults to ``"message"``."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


@attrs.define
class SSEDecoder:
    """Feed it text chunks; it returns the events each chunk completes."""

    _buffer: str = ""
    _event: str = ""
    _data: list[str] = attrs.field(factory=list)
    _id: str | None = None
    _retry: int | None = None
    _pending_cr: bool = False
    _size: int = 0  # characters of data in the event so far
    #: past the bound after events of the same chunk: raised at the next feed
    _refused: UnreadableBody | None = None
    max_event_size: int = attrs.field(default=MAX_EVENT_SIZE, kw_only=True)

    def feed(self, chunk: str) -> list[SSEEvent]:
        if self._refused is not None:
            raise self._refused
        if self._pending_cr and chunk.startswith("\n"):
            chunk = chunk[1:]
        self._pending_cr = chunk.endswith("\r")
        text = self._buffer + chunk
        events: list[SSEEvent] = []
        # the complete lines: up to the last break (found from the end, so a long
        # line without one costs a scan, not a regex search from every position)
        end = max(text.rfind("\n"), text.rfind("\r")) + 1
        try:
            if end:
                lines = _BREAK.split(text[:end])
                lines.pop()  # after the last break: empty
                for line in lines:
                    event = self._line(line)
                    if event is not None:
                        events.append(event)
            self._buffer = text[end:]
            if len(self._buffer) > self.max_event_size:
                raise _too_long("line", self.max_event_size)
        except UnreadableBody as exc:
            if not events:
                raise
            self._refused = exc  # the events before it are delivered first
        return events

    def flush(self) -> list[SSEEvent]:
        """End of stream: a final event without its blank line is dispatched too."""
        if self._refused is not None:
            raise self._refused
        events = []
        if self._buffer:
            event = self._line(self._buffer)
            self._buffer = ""
            if event is not None:
                events.append(event)
        if self._data or self._event:
            event = self._line("")
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            if not self._data and not self._event:
                return None
            event = SSEEvent(
                event=self._event or "message",
                data="\n".join(self._data),
                id=self._id,
                retry=self._retry,
            )
            self._event, self._data, self._size = "", [], 0
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._size += len(value) + 1
            if self._size > self.max_event_size:
                raise _too_long("event", self.max_event_size)
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None


def _too_long(what: str, limit: int) -> UnreadableBody:
    return UnreadableBody(f"a stream {what} is over {limit} characters")


async def aiter_sse(
    chunks: AsyncIterator[str], *, max_event_size: int = MAX_EVENT_SIZE
) -> AsyncIterator[SSEEvent]:
    """Decode an async stream of text chunks (``response.aiter_text()``) into events."""
    decoder = SSEDecoder(max_event_size=max_event_size)
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.flush():
        yield event
