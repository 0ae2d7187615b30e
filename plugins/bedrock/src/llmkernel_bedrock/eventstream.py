"""An incremental decoder of AWS's ``application/vnd.amazon.eventstream`` framing.

Bedrock's ``ConverseStream`` answers with a body of binary frames (the same framing
as Transcribe, Lex and S3 Select; AWS's "Event stream encoding" reference)::

    total length      4 bytes, big-endian: the whole frame, these 4 bytes included
    headers length    4 bytes, big-endian
    prelude CRC       4 bytes: CRC-32 of the 8 bytes above
    headers           ``headers length`` bytes
    payload           total - headers - 16 bytes
    message CRC       4 bytes: CRC-32 of every byte before it

Each header is ``name length`` (1 byte), the UTF-8 name, a value type (1 byte) and
the value: 0 true, 1 false (no value), 2 byte, 3 short, 4 int, 5 long (signed,
big-endian), 6 bytes and 7 string (2-byte length first), 8 timestamp (int64
milliseconds), 9 UUID (16 bytes). CRC-32 is the gzip one (:func:`zlib.crc32`).

:class:`EventStreamDecoder` takes the body's bytes as they arrive, in pieces of any
size, and returns each frame as soon as its last byte is in; the prelude CRC is
checked before the length is trusted, so a corrupt length never makes it wait for
(or allocate) gigabytes.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = [
    "MAX_FRAME",
    "EventStreamDecoder",
    "EventStreamError",
    "Frame",
    "decode_headers",
]

_PRELUDE = 12
_OVERHEAD = 16
#: AWS caps an event-stream frame's payload at 16 MiB and its headers at 128 KiB.
MAX_FRAME = 16 * 1024 * 1024 + 128 * 1024 + _OVERHEAD


class EventStreamError(ValueError):
    """The bytes are not a valid event stream; the message says what is wrong."""


@attrs.frozen(kw_only=True)
class Frame:
    """One decoded frame: its headers (name to value) and raw payload."""

    headers: Mapping[str, Any]
    payload: bytes

    @property
    def message_type(self) -> str:
        """``event``, ``exception`` or ``error`` (the ``:message-type`` header)."""
        value = self.headers.get(":message-type")
        return value if isinstance(value, str) else ""

    @property
    def event_type(self) -> str:
        value = self.headers.get(":event-type")
        return value if isinstance(value, str) else ""


@attrs.define
class EventStreamDecoder:
    """Feed it bytes; it returns the frames they complete. Call :meth:`end` when the
    body ends: leftover bytes mean the stream was cut mid-frame."""

    _buffer: bytearray = attrs.field(factory=bytearray)
    #: the total length of the frame being read, once its prelude checked out
    _need: int = 0
    frames: int = 0

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while True:
            if not self._need:
                if len(self._buffer) < _PRELUDE:
                    return frames
                self._need = self._prelude()
            if len(self._buffer) < self._need:
                return frames
            raw = bytes(self._buffer[: self._need])
            del self._buffer[: self._need]
            self._need = 0
            frames.append(self._frame(raw))
            self.frames += 1

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a whole frame."""
        return len(self._buffer)

    def end(self) -> None:
        """Raise :class:`EventStreamError` if the body stopped inside a frame."""
        if self._buffer:
            expected = f" of {self._need}" if self._need else ""
            raise EventStreamError(
                f"the stream ended inside frame {self.frames + 1} "
                f"({len(self._buffer)}{expected} bytes received)"
            )

    def _prelude(self) -> int:
        total, headers_length, crc = struct.unpack_from(">III", self._buffer)
        actual = zlib.crc32(self._buffer[:8])
        if actual != crc:
            raise EventStreamError(
                f"frame {self.frames + 1}: prelude CRC mismatch "
                f"(header says {crc:#010x}, bytes give {actual:#010x})"
            )
        if total < _OVERHEAD or total > MAX_FRAME:
            raise EventStreamError(f"frame {self.frames + 1}: impossible length {total}")
        if headers_length > total - _OVERHEAD:
            raise EventStreamError(
                f"frame {self.frames + 1}: headers ({headers_length} bytes) overrun the frame"
            )
        return int(total)

    def _frame(self, raw: bytes) -> Frame:
        (crc,) = struct.unpack_from(">I", raw, len(raw) - 4)
        actual = zlib.crc32(raw[:-4])
        if actual != crc:
            raise EventStreamError(
                f"frame {self.frames + 1}: message CRC mismatch "
                f"(frame says {crc:#010x}, bytes give {actual:#010x})"
            )
        (headers_length,) = struct.unpack_from(">I", raw, 4)
        headers = decode_headers(raw[_PRELUDE : _PRELUDE + headers_length])
        return Frame(headers=headers, payload=raw[_PRELUDE + headers_length : -4])


_FIXED = {2: ">b", 3: ">h", 4: ">i", 5: ">q", 8: ">q"}


def decode_headers(data: bytes) -> dict[str, Any]:
    """The headers section of a frame as a dict (timestamps as int milliseconds,
    UUIDs as :class:`uuid.UUID`, byte arrays as bytes)."""
    headers: dict[str, Any] = {}
    at = 0
    try:
        while at < len(data):
            size = data[at]
            name = data[at + 1 : at + 1 + size].decode("utf-8")
            at += 1 + size
            kind = data[at]
            at += 1
            value: Any
            if kind in (0, 1):
                value = kind == 0
            elif kind in _FIXED:
                fmt = _FIXED[kind]
                (value,) = struct.unpack_from(fmt, data, at)
                at += struct.calcsize(fmt)
            elif kind in (6, 7):
                (length,) = struct.unpack_from(">H", data, at)
                at += 2
                raw = data[at : at + length]
                if len(raw) != length:
                    raise EventStreamError(f"header {name!r} overruns the headers section")
                value = raw.decode("utf-8") if kind == 7 else bytes(raw)
                at += length
            elif kind == 9:
                raw = data[at : at + 16]
                if len(raw) != 16:
                    raise EventStreamError(f"header {name!r} overruns the headers section")
                value = uuid.UUID(bytes=bytes(raw))
                at += 16
            else:
                raise EventStreamError(f"header {name!r} has unknown value type {kind}")
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise EventStreamError(f"the headers section is malformed ({exc})") from None
    return headers
