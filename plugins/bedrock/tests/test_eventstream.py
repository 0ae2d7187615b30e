"""The event-stream decoder: frames from a public test vector and from the test
encoder, fed whole, byte by byte and in odd pieces; CRC and length errors."""

from __future__ import annotations

import struct
import uuid
import zlib

import pytest
from bedrock_wire import event, frame

from llmkernel_bedrock.eventstream import EventStreamDecoder, EventStreamError, decode_headers

# '{"foo": "bar"}' with no headers, then with content-type: application/json, as
# encoded in the examples of the hex.pm "event_stream" package (AWS event stream
# encoding).
VECTOR_PLAIN = (
    bytes([0, 0, 0, 30, 0, 0, 0, 0, 186, 242, 246, 138])
    + b'{"foo": "bar"}'
    + bytes([174, 114, 88, 228])
)
VECTOR_HEADER = (
    bytes([0, 0, 0, 62, 0, 0, 0, 32, 64, 93, 249, 70, 12])
    + b"content-type"
    + bytes([7, 0, 16])
    + b"application/json"
    + b'{"foo": "bar"}'
    + bytes([111, 162, 191, 59])
)


def test_public_vectors_decode() -> None:
    decoder = EventStreamDecoder()
    frames = decoder.feed(VECTOR_PLAIN + VECTOR_HEADER)
    assert [f.payload for f in frames] == [b'{"foo": "bar"}', b'{"foo": "bar"}']
    assert frames[0].headers == {}
    assert frames[1].headers == {"content-type": "application/json"}
    decoder.end()


def test_the_test_encoder_matches_the_public_vector() -> None:
    assert frame({}, b'{"foo": "bar"}') == VECTOR_PLAIN
    assert frame({"content-type": "application/json"}, b'{"foo": "bar"}') == VECTOR_HEADER


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 13, 64, 4096])
def test_any_chunking_gives_the_same_frames(size: int) -> None:
    body = b"".join(
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": f"piece {i}"}})
        for i in range(5)
    )
    decoder = EventStreamDecoder()
    frames = []
    for start in range(0, len(body), size):
        frames += decoder.feed(body[start : start + size])
    decoder.end()
    assert [f.event_type for f in frames] == ["contentBlockDelta"] * 5
    assert [f.message_type for f in frames] == ["event"] * 5
    assert b'"piece 4"' in frames[-1].payload


def test_a_frame_is_returned_as_soon_as_its_last_byte_arrives() -> None:
    one = event("messageStart", {"role": "assistant"})
    decoder = EventStreamDecoder()
    assert decoder.feed(one[:-1]) == []
    assert decoder.pending == len(one) - 1
    assert len(decoder.feed(one[-1:])) == 1
    assert decoder.pending == 0


def test_every_header_type() -> None:
    raw = (
        b"\x01t\x00"
        + b"\x01f\x01"
        + b"\x01b\x02\xff"
        + b"\x01s\x03"
        + struct.pack(">h", -2)
        + b"\x01i\x04"
        + struct.pack(">i", 70000)
        + b"\x01l\x05"
        + struct.pack(">q", 2**40)
        + b"\x01y\x06\x00\x02\x00\x01"
        + b"\x01S\x07\x00\x02hi"
        + b"\x01T\x08"
        + struct.pack(">q", 1_700_000_000_000)
        + b"\x01u\x09"
        + uuid.UUID(int=7).bytes
    )
    assert decode_headers(raw) == {
        "t": True,
        "f": False,
        "b": -1,
        "s": -2,
        "i": 70000,
        "l": 2**40,
        "y": b"\x00\x01",
        "S": "hi",
        "T": 1_700_000_000_000,
        "u": uuid.UUID(int=7),
    }


def test_unknown_header_type_is_an_error() -> None:
    with pytest.raises(EventStreamError, match="unknown value type 12"):
        decode_headers(b"\x01x\x0c")


def test_bad_prelude_crc() -> None:
    bad = bytearray(VECTOR_PLAIN)
    bad[8] ^= 0xFF
    with pytest.raises(EventStreamError, match="frame 1: prelude CRC mismatch"):
        EventStreamDecoder().feed(bytes(bad))


def test_bad_message_crc_names_the_frame() -> None:
    bad = bytearray(VECTOR_HEADER)
    bad[-6] ^= 0x01  # a payload byte
    decoder = EventStreamDecoder()
    with pytest.raises(EventStreamError, match="frame 2: message CRC mismatch"):
        decoder.feed(VECTOR_PLAIN + bytes(bad))


def test_an_impossible_length_is_refused_before_waiting_for_it() -> None:
    prelude = struct.pack(">II", 2**31, 0)
    with pytest.raises(EventStreamError, match="impossible length"):
        EventStreamDecoder().feed(prelude + struct.pack(">I", zlib.crc32(prelude)))


def test_headers_longer_than_the_frame() -> None:
    prelude = struct.pack(">II", 20, 10)
    with pytest.raises(EventStreamError, match="overrun"):
        EventStreamDecoder().feed(prelude + struct.pack(">I", zlib.crc32(prelude)))


def test_a_body_cut_mid_frame_is_reported_at_the_end() -> None:
    decoder = EventStreamDecoder()
    decoder.feed(VECTOR_PLAIN + VECTOR_HEADER[:20])
    with pytest.raises(EventStreamError, match=r"inside frame 2 \(20 of 62 bytes"):
        decoder.end()
