"""The gateway's uvicorn protocol writes a response's head with its first body part:
one write for a whole answer, the head with the first chunk of a stream, and the
same bytes on the wire as uvicorn's own protocol."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from llmkernel_gateway.protocol import CoalescingProtocol

REQUEST = b"GET /x HTTP/1.1\r\nHost: test\r\n\r\n"


class Transport(asyncio.Transport):
    """Records what the protocol writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 4000), "peername": ("127.0.0.1", 5000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _exchange(
    protocol_class: type[HttpToolsProtocol], app: Any, request: bytes = REQUEST
) -> Transport:
    config = uvicorn.Config(
        app, http=protocol_class, lifespan="off", log_level="critical", access_log=False
    )
    config.load()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = Transport()
    protocol.connection_made(transport)
    protocol.data_received(request)
    for _ in range(100):
        await asyncio.sleep(0)
        if protocol.cycle is not None and protocol.cycle.response_complete:
            break
    protocol.connection_lost(None)
    return transport


async def _whole(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")],
        }
    )
    await send({"type": "http.response.body", "body": b"hello"})


async def _streamed(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for part in (b"one", b"two"):
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def test_a_whole_answer_is_one_write_with_the_same_bytes() -> None:
    plain = await _exchange(HttpToolsProtocol, _whole)
    coalesced = await _exchange(CoalescingProtocol, _whole)
    assert len(plain.writes) == 2  # uvicorn's own: the head, then the body
    assert len(coalesced.writes) == 1
    assert _without_date(coalesced.writes[0]) == _without_date(b"".join(plain.writes))
    assert coalesced.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert coalesced.writes[0].endswith(b"\r\n\r\nhello")


async def test_a_stream_sends_its_head_with_the_first_chunk_then_each_chunk() -> None:
    plain = await _exchange(HttpToolsProtocol, _streamed)
    coalesced = await _exchange(CoalescingProtocol, _streamed)
    assert len(coalesced.writes) == len(plain.writes) - 1
    assert coalesced.writes[0].endswith(b"\r\n\r\n3\r\none\r\n")
    assert coalesced.writes[1:] == plain.writes[2:]
    assert _without_date(b"".join(coalesced.writes)) == _without_date(b"".join(plain.writes))


async def test_an_app_failure_before_the_answer_is_still_a_500() -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    transport = await _exchange(CoalescingProtocol, broken)
    assert b"".join(transport.writes).startswith(b"HTTP/1.1 500 ")


async def test_connection_close_is_kept() -> None:
    request = b"GET /x HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    transport = await _exchange(CoalescingProtocol, _whole, request)
    assert len(transport.writes) == 1
    assert b"connection: close" in transport.writes[0]
    assert transport.closed


async def _responded(scope: Any, receive: Any, send: Any) -> None:
    """What the gateway's routes do: the whole answer through the cycle's respond()."""
    cycle = send.__self__
    assert cycle.respond(200, [(b"content-type", b"text/plain")], b"hello")


async def test_respond_writes_the_same_bytes_as_the_asgi_messages_in_one_write() -> None:
    messages = await _exchange(CoalescingProtocol, _whole)
    direct = await _exchange(CoalescingProtocol, _responded)
    assert len(direct.writes) == 1
    assert _without_date(direct.writes[0]) == _without_date(messages.writes[0])
    assert direct.closed == messages.closed


async def test_respond_keeps_connection_close() -> None:
    request = b"GET /x HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    transport = await _exchange(CoalescingProtocol, _responded, request)
    assert b"connection: close\r\n" in transport.writes[0]
    assert transport.closed


async def test_respond_sends_no_body_to_head() -> None:
    request = b"HEAD /x HTTP/1.1\r\nHost: test\r\n\r\n"
    transport = await _exchange(CoalescingProtocol, _responded, request)
    assert transport.writes[0].endswith(b"content-length: 5\r\n\r\n")


async def test_respond_refuses_a_header_value_with_a_line_break() -> None:
    async def injected(scope: Any, receive: Any, send: Any) -> None:
        send.__self__.respond(200, [(b"x-llmkernel-model", b"m\r\nset-cookie: a=b")], b"")

    transport = await _exchange(CoalescingProtocol, injected)
    written = b"".join(transport.writes)
    assert written.startswith(b"HTTP/1.1 500 ")
    assert b"set-cookie" not in written


async def test_respond_declines_after_the_response_started() -> None:
    async def started(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        assert not send.__self__.respond(200, [], b"late")
        await send({"type": "http.response.body", "body": b"ok"})

    transport = await _exchange(CoalescingProtocol, started)
    assert b"".join(transport.writes).endswith(b"\r\n\r\n2\r\nok\r\n0\r\n\r\n")


def _without_date(data: bytes) -> bytes:
    return b"\r\n".join(line for line in data.split(b"\r\n") if not line.startswith(b"date:"))


@pytest.fixture(autouse=True)
def _quiet_logs() -> None:
    import logging

    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
