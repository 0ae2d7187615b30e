"""The shared wire helpers: SSE, NDJSON, Retry-After, status mapping, send/read_json,
the fake server."""

from __future__ import annotations

import email.utils
import json
import time

import httpx
import pytest

from llmkernel import errors
from llmkernel.http import (
    SSEDecoder,
    aiter_ndjson,
    aiter_sse,
    error_for_status,
    error_for_transport,
    parse_duration,
    parse_retry_after,
    read_json,
    send,
)
from llmkernel.testing.fake_server import FakeResponse, FakeServer, Gate


def test_sse_any_line_ending_and_any_split() -> None:
    text = (
        'event: message_start\r\ndata: {"a":1}\r\n\r\n: keep-alive\n\n'
        "data: line one\ndata: line two\n\nid: 7\ndata: \u2028x\r\rdata: tail"
    )
    for size in (1, 2, 3, 7, len(text)):
        decoder = SSEDecoder()
        events = []
        for i in range(0, len(text), size):
            events += decoder.feed(text[i : i + size])
        events += decoder.flush()
        assert [(e.event, e.data) for e in events] == [
            ("message_start", '{"a":1}'),
            ("message", "line one\nline two"),
            ("message", "\u2028x"),
            ("message", "tail"),
        ], size
        assert events[2].id == "7"


async def test_ndjson_yields_each_line() -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for piece in ['{"a": 1}\n{"b"', ": 2}\n", '\n{"c": 3}']:
            yield piece

    assert [x async for x in aiter_ndjson(chunks())] == [{"a": 1}, {"b": 2}, {"c": 3}]

    async def bad():  # type: ignore[no-untyped-def]
        yield "not json\n"

    with pytest.raises(ValueError, match="not a JSON line"):
        [x async for x in aiter_ndjson(bad())]


def test_retry_after_forms() -> None:
    now = time.time()
    assert parse_retry_after({"retry-after": "7"}) == 7.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= (parse_retry_after({"retry-after": date}, now=now) or 0) <= 31
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "-3"}) == 0.0
    assert parse_duration("17s") == 17.0 and parse_duration("0.5s") == 0.5
    assert parse_duration("x") is None


@pytest.mark.parametrize(
    ("status", "code", "message", "expected"),
    [
        (400, None, "bad field", errors.InvalidRequestError),
        (400, "context_length_exceeded", "too long", errors.ContextWindowExceededError),
        (400, None, "prompt is too long: 300000 tokens", errors.ContextWindowExceededError),
        (401, None, "bad key", errors.AuthenticationError),
        (403, None, "no", errors.PermissionDeniedError),
        (404, None, "model not found", errors.ModelNotFoundError),
        (408, None, "slow", errors.TimeoutError),
        (409, None, "conflict", errors.ServerError),
        (413, None, "too large", errors.InvalidRequestError),
        (422, None, "unprocessable", errors.InvalidRequestError),
        (429, None, "slow down", errors.RateLimitError),
        (429, "insufficient_quota", "no money", errors.QuotaExceededError),
        (500, None, "oops", errors.ServerError),
        (502, None, "bad gateway", errors.ServerError),
        (503, None, "unavailable", errors.OverloadedError),
        (529, "overloaded_error", "overloaded", errors.OverloadedError),
    ],
)
def test_status_mapping(
    status: int, code: str | None, message: str, expected: type[errors.ProviderError]
) -> None:
    error = error_for_status(
        status, message, provider="p", model="m", code=code, request_id="req-1", retry_after=2.0
    )
    assert type(error) is expected
    assert (error.provider, error.model, error.status, error.request_id) == (
        "p",
        "m",
        status,
        "req-1",
    )
    assert "p/m" in str(error) and "req-1" in str(error)


def test_transport_mapping() -> None:
    assert isinstance(
        error_for_transport(httpx.ConnectError("refused"), provider="p"), errors.NetworkError
    )
    timeout = error_for_transport(httpx.ReadTimeout("slow"), provider="p")
    assert isinstance(timeout, errors.TimeoutError) and timeout.retryable


async def test_fake_server_streams_incrementally_and_records_requests() -> None:
    gate = Gate()
    with FakeServer() as server:
        server.expect(
            "POST", "/v1/stream", FakeResponse.sse(["data: one\n\n", gate, "data: two\n\n"])
        )
        async with httpx.AsyncClient(base_url=server.url) as client:
            request = client.build_request(
                "POST", "/v1/stream?alt=sse", json={"x": 1}, headers={"X-Api-Key": "k"}
            )
            response = await client.send(request, stream=True)
            events = aiter_sse(response.aiter_text())
            first = await anext(events)
            assert first.data == "one"  # arrived while the server waits at the gate
            gate.open()
            rest = [e.data async for e in events]
            await response.aclose()
        assert rest == ["two"]
        recorded = server.requests[0]
        assert recorded.path == "/v1/stream" and recorded.query == {"alt": ["sse"]}
        assert recorded.headers["x-api-key"] == "k" and recorded.json() == {"x": 1}


async def test_fake_server_cut_and_reset() -> None:
    with FakeServer() as server:
        server.expect("GET", "/cut", FakeResponse.sse(["data: a\n\n"], truncate=True))
        server.expect("GET", "/reset", FakeResponse.sse(["data: a\n\n"], reset=True))
        async with httpx.AsyncClient(base_url=server.url) as client:
            for path in ("/cut", "/reset"):
                with pytest.raises(httpx.TransportError):
                    async with client.stream("GET", path) as response:
                        async for _ in response.aiter_text():
                            pass
            missing = await client.get("/nothing")
            assert missing.status_code == 404
            assert "no route" in json.loads(missing.text)["error"]


@pytest.mark.parametrize(
    ("status", "code", "message", "expected"),
    [
        (400, "invalid_request_error", "Your credit balance is too low", errors.QuotaExceededError),
        (403, "billing_error", "billing problem", errors.QuotaExceededError),
        (429, "rate_limit_exceeded", "see your quota and billing page", errors.RateLimitError),
        (429, None, "You exceeded your current quota", errors.QuotaExceededError),
        (400, "overloaded_error", "busy", errors.OverloadedError),
    ],
)
def test_quota_and_overload_words(
    status: int, code: str | None, message: str, expected: type[errors.ProviderError]
) -> None:
    assert type(error_for_status(status, message, provider="p", code=code)) is expected


# ----------------------------------------------------------------- send / read_json


class _ErrorFor:
    """An ``error_for`` that records what :func:`send` passed it."""

    def __init__(self) -> None:
        self.calls: list[tuple[httpx.Response, bytes]] = []

    def __call__(self, response: httpx.Response, body: bytes) -> errors.ProviderError:
        self.calls.append((response, body))
        return errors.ServerError(f"status {response.status_code}", provider="p", model="m")


async def test_send_returns_the_open_response_for_a_2xx() -> None:
    error_for = _ErrorFor()
    with FakeServer() as server:
        server.expect("POST", "/ok", FakeResponse.json_body({"a": [1, 2]}))
        async with httpx.AsyncClient(base_url=server.url) as client:
            request = client.build_request("POST", "/ok", json={"q": 1})
            response = await send(client, request, provider="p", model="m", error_for=error_for)
            assert response.status_code == 200 and not response.is_closed
            assert await read_json(response, provider="p", model="m") == {"a": [1, 2]}
            assert response.is_closed
        assert server.requests[0].json() == {"q": 1}
    assert error_for.calls == []


@pytest.mark.parametrize("status", [302, 404, 429, 500])
async def test_send_error_status_calls_error_for_with_the_body_and_closes(status: int) -> None:
    error_for = _ErrorFor()
    with FakeServer() as server:
        server.expect("GET", "/fail", FakeResponse.text_body('{"error": "no"}', status=status))
        async with httpx.AsyncClient(base_url=server.url) as client:
            request = client.build_request("GET", "/fail")
            with pytest.raises(errors.ServerError, match=f"status {status}") as info:
                await send(client, request, provider="p", model="m", error_for=error_for)
    assert info.value.provider == "p"
    [(response, body)] = error_for.calls
    assert response.status_code == status and response.is_closed
    assert body == b'{"error": "no"}' and response.text == '{"error": "no"}'


async def test_send_and_read_json_map_a_reset_connection_to_network_error() -> None:
    error_for = _ErrorFor()
    with FakeServer() as server:
        server.expect("GET", "/fail", FakeResponse(status=500, pieces=["half a bo"], reset=True))
        server.expect("GET", "/ok", FakeResponse(status=200, pieces=['{"a": '], reset=True))
        async with httpx.AsyncClient(base_url=server.url) as client:
            # the error body is cut off: the transport failure wins over the status
            with pytest.raises(errors.NetworkError) as info:
                await send(
                    client,
                    client.build_request("GET", "/fail"),
                    provider="p",
                    model="m",
                    error_for=error_for,
                )
            assert error_for.calls == []
            assert (info.value.provider, info.value.model) == ("p", "m")
            assert isinstance(info.value.__cause__, httpx.TransportError)
            assert info.value.retryable
            # a success body cut off while read_json reads it
            response = await send(
                client,
                client.build_request("GET", "/ok"),
                provider="p",
                model="m",
                error_for=error_for,
            )
            with pytest.raises(errors.NetworkError):
                await read_json(response, provider="p", model="m")
            assert response.is_closed
        url = server.url
    # nobody listening any more: the connection is refused
    async with httpx.AsyncClient(base_url=url) as client:
        with pytest.raises(errors.NetworkError, match="connection failed") as refused:
            await send(
                client,
                client.build_request("GET", "/ok"),
                provider="p",
                model="m",
                error_for=error_for,
            )
    assert isinstance(refused.value.__cause__, httpx.ConnectError)
    assert error_for.calls == []


async def test_read_json_of_a_body_that_is_not_json_is_malformed() -> None:
    html = "<html>\n  <body>upstream   said no</body>\n</html>" + "x" * 300
    with FakeServer() as server:
        server.expect(
            "GET",
            "/page",
            FakeResponse.text_body(html, content_type="text/html", headers={"x-request-id": "r-7"}),
        )
        async with httpx.AsyncClient(base_url=server.url) as client:
            request = client.build_request("GET", "/page")
            response = await send(client, request, provider="p", model="m", error_for=_ErrorFor())
            with pytest.raises(errors.MalformedResponseError) as info:
                await read_json(response, provider="p", model="m")
            assert response.is_closed
            # a provider words the error its own way
            seen: list[str] = []

            def malformed(snippet: str) -> errors.MalformedResponseError:
                seen.append(snippet)
                return errors.MalformedResponseError("mine", provider="p")

            response = await send(client, request, provider="p", model="m", error_for=_ErrorFor())
            with pytest.raises(errors.MalformedResponseError, match="mine"):
                await read_json(response, provider="p", model="m", malformed=malformed)
    error = info.value
    assert "p answered HTTP 200" in error.message and "not JSON" in error.message
    assert "<html> <body>upstream said no</body> </html>xxx" in error.message
    assert (error.provider, error.model, error.status, error.request_id) == ("p", "m", 200, "r-7")
    assert error.__cause__ is None and error.__suppress_context__
    assert seen == [" ".join(html.split())[:200]]
