"""The contract between the gateway's protocol and uvicorn's: the ``llmkernel.writer``
extension writes the same bytes as uvicorn's own ASGI handling in fewer writes, and
the connection limits answer the API's JSON error. ``nox -s gateway_protocol`` runs
this file against the lowest and the highest uvicorn the gateway supports."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from llmkernel_gateway.protocol import WRITER, GatewayProtocol
from llmkernel_gateway.settings import ConnectionLimits

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
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    @property
    def written(self) -> bytes:
        return b"".join(self.writes)


class App:
    """An ASGI app with the gateway's ``connection_limits``."""

    def __init__(self, handler: Any, limits: ConnectionLimits | None = None) -> None:
        self.handler = handler
        self.connection_limits = limits or ConnectionLimits()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.handler(scope, receive, send)


def _protocol(
    protocol_class: type[HttpToolsProtocol], app: Any, state: ServerState | None = None
) -> HttpToolsProtocol:
    config = uvicorn.Config(
        app, http=protocol_class, lifespan="off", log_level="critical", access_log=False
    )
    config.load()
    return protocol_class(config=config, server_state=state or ServerState(), app_state={})


async def _settle(protocol: HttpToolsProtocol) -> None:
    for _ in range(100):
        await asyncio.sleep(0)
        if protocol.cycle is not None and protocol.cycle.response_complete:
            break


async def _exchange(
    protocol_class: type[HttpToolsProtocol], handler: Any, request: bytes = REQUEST
) -> Transport:
    protocol = _protocol(protocol_class, App(handler))
    transport = Transport()
    protocol.connection_made(transport)
    protocol.data_received(request)
    await _settle(protocol)
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


async def _responded(scope: Any, receive: Any, send: Any) -> None:
    """What the gateway's routes do: the whole answer through the writer extension."""
    writer = scope["extensions"][WRITER]
    assert writer.respond(scope, 200, [(b"content-type", b"text/plain")], b"hello")


async def _streamed(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for part in (b"one", b"two"):
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _stream_started(scope: Any, receive: Any, send: Any) -> None:
    writer = scope["extensions"][WRITER]
    await writer.start_stream(
        scope,
        send,
        {"type": "http.response.start", "status": 200, "headers": []},
        {"type": "http.response.body", "body": b"one", "more_body": True},
    )
    await send({"type": "http.response.body", "body": b"two", "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _without_date(data: bytes) -> bytes:
    return b"\r\n".join(line for line in data.split(b"\r\n") if not line.startswith(b"date:"))


def _error(written: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = written.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head
    assert b"connection: close" in head
    return int(head.split(b" ", 2)[1]), json.loads(body)["error"]


# ---------------------------------------------------------------------- one write


async def test_respond_writes_the_same_bytes_as_the_asgi_messages_in_one_write() -> None:
    plain = await _exchange(HttpToolsProtocol, _whole)
    direct = await _exchange(GatewayProtocol, _responded)
    assert len(plain.writes) == 2  # uvicorn's own: the head, then the body
    assert len(direct.writes) == 1
    assert _without_date(direct.writes[0]) == _without_date(plain.written)
    assert direct.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert direct.closed == plain.closed


async def test_an_app_sending_messages_gets_uvicorns_own_bytes() -> None:
    plain = await _exchange(HttpToolsProtocol, _whole)
    ours = await _exchange(GatewayProtocol, _whole)
    assert ours.writes[1:] == plain.writes[1:]
    assert _without_date(ours.written) == _without_date(plain.written)


async def test_a_stream_sends_its_head_with_the_first_chunk_then_each_chunk() -> None:
    plain = await _exchange(HttpToolsProtocol, _streamed)
    coalesced = await _exchange(GatewayProtocol, _stream_started)
    assert len(coalesced.writes) == len(plain.writes) - 1
    assert coalesced.writes[0].endswith(b"\r\n\r\n3\r\none\r\n")
    assert coalesced.writes[1:] == plain.writes[2:]
    assert _without_date(coalesced.written) == _without_date(plain.written)


async def test_an_app_failure_before_the_answer_is_still_a_500() -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    transport = await _exchange(GatewayProtocol, broken)
    assert transport.written.startswith(b"HTTP/1.1 500 ")


async def test_respond_keeps_connection_close() -> None:
    request = b"GET /x HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    transport = await _exchange(GatewayProtocol, _responded, request)
    assert len(transport.writes) == 1
    assert b"connection: close\r\n" in transport.writes[0]
    assert transport.closed


async def test_respond_can_end_the_connection_itself() -> None:
    async def closing(scope: Any, receive: Any, send: Any) -> None:
        assert scope["extensions"][WRITER].respond(scope, 413, [], b"no", close=True)

    transport = await _exchange(GatewayProtocol, closing)
    assert transport.writes[0].count(b"connection: close\r\n") == 1
    assert transport.closed


async def test_respond_sends_no_body_to_head() -> None:
    request = b"HEAD /x HTTP/1.1\r\nHost: test\r\n\r\n"
    transport = await _exchange(GatewayProtocol, _responded, request)
    assert transport.writes[0].endswith(b"content-length: 5\r\n\r\n")


async def test_respond_refuses_a_header_value_with_a_line_break_before_writing() -> None:
    refused: list[Exception] = []

    async def injected(scope: Any, receive: Any, send: Any) -> None:
        writer = scope["extensions"][WRITER]
        try:
            writer.respond(scope, 200, [(b"x-llmkernel-model", b"m\r\nset-cookie: a=b")], b"")
        except ValueError as exc:
            refused.append(exc)
        assert writer.respond(scope, 500, [], b"{}")

    transport = await _exchange(GatewayProtocol, injected)
    assert refused and "x-llmkernel-model" in str(refused[0])
    assert transport.written.startswith(b"HTTP/1.1 500 ")
    assert b"set-cookie" not in transport.written


async def test_respond_declines_after_the_response_started() -> None:
    async def started(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        assert not scope["extensions"][WRITER].respond(scope, 200, [], b"late")
        await send({"type": "http.response.body", "body": b"ok"})

    transport = await _exchange(GatewayProtocol, started)
    assert transport.written.endswith(b"\r\n\r\n2\r\nok\r\n0\r\n\r\n")


async def test_pipelined_requests_are_answered_in_order() -> None:
    """A request queued behind another is not the current cycle: respond declines
    for it until its turn, and the answers keep their order."""
    seen: list[str] = []

    async def answer(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        writer = scope["extensions"][WRITER]
        if not writer.respond(scope, 200, [], scope["path"].encode()):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": scope["path"].encode()})

    protocol = _protocol(GatewayProtocol, App(answer))
    transport = Transport()
    protocol.connection_made(transport)
    protocol.data_received(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n")
    for _ in range(200):
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    assert seen == ["/a", "/b"]
    assert transport.written.count(b"HTTP/1.1 200 OK") == 2
    assert transport.written.index(b"/a") < transport.written.index(b"/b")


# ---------------------------------------------------------------------- limits


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    assert scope["extensions"][WRITER].respond(scope, 200, [], b"ok")


def _open(limits: ConnectionLimits, state: ServerState | None = None) -> tuple[Any, Transport]:
    protocol = _protocol(GatewayProtocol, App(_ok, limits), state)
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


async def test_a_head_larger_than_the_limit_is_431_and_nothing_more_is_read() -> None:
    protocol, transport = _open(ConnectionLimits(max_header_bytes=2048))
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: t\r\n")
    for _ in range(100):  # endless headers, 100 bytes at a time
        protocol.data_received(b"x-padding: " + b"a" * 87 + b"\r\n")
    status, error = _error(transport.written)
    assert status == 431 and "2048 bytes" in error["message"]
    assert "max_header_bytes" in error["message"]
    assert transport.closed and len(protocol.headers) < 25  # stopped near the limit


async def test_a_complete_head_over_the_limit_in_one_read_is_431() -> None:
    protocol, transport = _open(ConnectionLimits(max_header_bytes=2048))
    protocol.data_received(b"GET / HTTP/1.1\r\nx-big: " + b"a" * 4000 + b"\r\n\r\n")
    await asyncio.sleep(0)
    status, _ = _error(transport.written)
    assert status == 431 and protocol.cycle is None  # the app never ran


async def test_too_many_header_fields_is_431() -> None:
    protocol, transport = _open(ConnectionLimits(max_headers=10))
    fields = b"".join(b"x-%d: 1\r\n" % i for i in range(11))
    protocol.data_received(b"GET / HTTP/1.1\r\n" + fields + b"\r\n")
    await asyncio.sleep(0)
    status, error = _error(transport.written)
    assert status == 431 and "11 header fields" in error["message"]


async def test_a_head_that_is_too_slow_is_408_after_the_header_timeout() -> None:
    protocol, transport = _open(ConnectionLimits(header_timeout=0.2))
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: t\r\n")
    await asyncio.sleep(0.1)
    protocol.data_received(b"x-slow: 1\r\n")  # data still coming does not extend it
    assert not transport.closed
    await asyncio.sleep(0.2)
    status, error = _error(transport.written)
    assert status == 408 and "header_timeout" in error["message"]
    assert transport.closed


async def test_a_connection_that_sends_nothing_is_closed_silently() -> None:
    _, transport = _open(ConnectionLimits(header_timeout=0.1))
    await asyncio.sleep(0.2)
    assert transport.closed and transport.writes == []


async def test_a_keep_alive_connection_gets_the_header_timeout_for_its_next_head() -> None:
    protocol, transport = _open(ConnectionLimits(header_timeout=0.2))
    protocol.data_received(REQUEST)
    await _settle(protocol)
    assert transport.written.endswith(b"\r\n\r\nok")
    await asyncio.sleep(0.3)  # idle between requests is uvicorn's keep-alive timeout
    assert not transport.closed
    protocol.data_received(b"GET / HTTP/1.1\r\n")
    await asyncio.sleep(0.3)
    assert transport.closed and b"HTTP/1.1 408 " in transport.written


async def test_a_body_that_stops_arriving_is_408_after_the_idle_timeout() -> None:
    protocol, transport = _open(ConnectionLimits(idle_timeout=0.2))
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
    await asyncio.sleep(0.1)
    protocol.data_received(b"def")  # a byte in time restarts the wait
    await asyncio.sleep(0.15)
    assert not transport.closed
    await asyncio.sleep(0.15)
    status, error = _error(transport.written)
    assert status == 408 and "idle_timeout" in error["message"]


async def test_a_whole_body_answers_normally_and_leaves_no_timer() -> None:
    protocol, transport = _open(ConnectionLimits(idle_timeout=0.1, header_timeout=0.1))
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
    await _settle(protocol)
    await asyncio.sleep(0.2)
    assert transport.written.endswith(b"\r\n\r\nok") and not transport.closed


async def test_connections_past_the_bound_are_closed_at_once() -> None:
    state = ServerState()
    limits = ConnectionLimits(max_connections=2)
    first, second, third = (_open(limits, state) for _ in range(3))
    assert (first[1].closed, second[1].closed, third[1].closed) == (False, False, True)
    assert third[1].writes == []  # closed before anything was read
    third[0].connection_lost(None)  # what the closed transport reports
    first[0].connection_lost(None)
    assert not _open(limits, state)[1].closed  # room again


async def test_a_malformed_request_gets_the_json_error() -> None:
    protocol, transport = _open(ConnectionLimits())
    protocol.data_received(b"GET / HTTP/1.1\r\nbad header\r\n\r\n")
    status, error = _error(transport.written)
    assert status == 400 and "malformed HTTP request" in error["message"]


@pytest.fixture(autouse=True)
def _quiet_logs() -> None:
    import logging

    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)


def test_the_gateway_uses_no_private_name_of_uvicorn_and_swaps_no_class() -> None:
    import ast
    from pathlib import Path

    import llmkernel_gateway

    for path in Path(llmkernel_gateway.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("uvicorn"):
                assert not any(part.startswith("_") for part in node.module.split(".")), path
                assert not any(alias.name.startswith("_") for alias in node.names), path
            if isinstance(node, ast.Attribute):
                assert node.attr not in ("__class__", "__self__"), (path, node.lineno)
