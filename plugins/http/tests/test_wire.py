"""The shared wire helpers: SSE, NDJSON, Retry-After, status mapping, send/read_json,
the fake server."""

from __future__ import annotations

import asyncio
import email.utils
import json
import time

import httpx
import pytest

from llmkernel import errors
from llmkernel_http import (
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
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer, Gate


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
    assert body == b'{"error": "no"}'


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
    assert error.__cause__ is None and error.__context__ is None
    assert seen == [" ".join(html.split())[:200]]


# --------------------------------------------------------------------------- rate limits


def test_openai_rate_limit_headers() -> None:
    from llmkernel_http import RateLimitInfo, parse_ratelimit_headers

    info = parse_ratelimit_headers(
        {
            "x-ratelimit-limit-requests": "10000",
            "x-ratelimit-limit-tokens": "2000000",
            "x-ratelimit-remaining-requests": "9999",
            "x-ratelimit-remaining-tokens": "1999990",
            "x-ratelimit-reset-requests": "20ms",
            "x-ratelimit-reset-tokens": "6m0s",
        }
    )
    assert info == RateLimitInfo(
        requests_limit=10000,
        requests_remaining=9999,
        requests_reset=0.02,
        tokens_limit=2000000,
        tokens_remaining=1999990,
        tokens_reset=360.0,
    )
    assert not info.empty


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("20ms", 0.02), ("6m0s", 360.0), ("1h2m3.5s", 3723.5), ("0.5", 0.5)],
)
def test_reset_durations(text: str, seconds: float) -> None:
    from llmkernel_http import parse_reset_duration

    assert parse_reset_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "5x", "1s2"])
def test_unreadable_reset_durations(text: str) -> None:
    from llmkernel_http import parse_reset_duration

    assert parse_reset_duration(text) is None


def test_anthropic_rate_limit_headers() -> None:
    from llmkernel_http import parse_ratelimit_headers

    now = 1_700_000_000.0
    in_30s = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 30))
    in_2s = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 2))
    info = parse_ratelimit_headers(
        {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "49",
            "anthropic-ratelimit-requests-reset": in_2s,
            "anthropic-ratelimit-tokens-limit": "80000",
            "anthropic-ratelimit-tokens-remaining": "79000",
            "anthropic-ratelimit-tokens-reset": in_30s,
            "retry-after": "3",
        },
        now=now,
    )
    assert (info.requests_limit, info.requests_remaining) == (50, 49)
    assert info.requests_reset == pytest.approx(2.0)
    assert (info.tokens_limit, info.tokens_remaining) == (80000, 79000)
    assert info.tokens_reset == pytest.approx(30.0)
    assert info.retry_after == 3.0


def test_anthropic_input_token_headers_when_no_combined_ones() -> None:
    from llmkernel_http import parse_ratelimit_headers

    info = parse_ratelimit_headers(
        {
            "anthropic-ratelimit-input-tokens-limit": "40000",
            "anthropic-ratelimit-input-tokens-remaining": "39000",
        }
    )
    assert (info.tokens_limit, info.tokens_remaining) == (40000, 39000)


def test_no_rate_limit_headers() -> None:
    from llmkernel_http import parse_ratelimit_headers

    assert parse_ratelimit_headers({"content-type": "application/json"}).empty


# --------------------------------------------------------------------------- wire readers


def test_wire_readers() -> None:
    from llmkernel_http import (
        capabilities_by_prefix,
        parse_arguments,
        snippet,
        split_data_url,
        token_count,
    )

    assert [token_count(v) for v in (5, 5.0, 5.5, -3, True, "7", None)] == [5, 5, 0, 0, 0, 0, 0]
    assert parse_arguments('{"a": 1}', name="f") == {"a": 1}
    assert parse_arguments("", name="f") == {} and parse_arguments(None) == {}
    with pytest.raises(ValueError, match="'f'"):
        parse_arguments("[1]", name="f")
    assert split_data_url("data:image/png;base64,QUJD") == ("image/png", "QUJD")
    assert split_data_url("https://x/y.png") is None
    with pytest.raises(ValueError, match="base64"):
        split_data_url("data:image/png,raw")
    assert snippet(b"  a\n\n b  " + b"x" * 300, 10) == "a b xxxxxx"
    table = {"gpt-4o": 1, "gpt-4o-mini": 2, "llama3.2": 3}
    assert capabilities_by_prefix(table, "gpt-4o-mini-2024-07-18") == 2
    assert capabilities_by_prefix(table, "gpt-4o-2024-08-06") == 1
    assert capabilities_by_prefix(table, "llama3.2:3b") == 3
    assert capabilities_by_prefix(table, "gpt-4") is None


def test_error_in_stream_keeps_the_http_status() -> None:
    from llmkernel_http import error_in_stream

    error = error_in_stream(529, "Overloaded", provider="p", error_type="overloaded_error")
    assert isinstance(error, errors.OverloadedError)
    assert error.status == 200
    assert str(error).startswith("p: overloaded_error: Overloaded")


# --------------------------------------------------------------------------- the HTTP base


def _base_provider(server: FakeServer, **options: object) -> object:
    """A minimal provider on the shared base: a stream of NDJSON lines, each either
    {"meta": ...} (metadata) or {"text": ...} (content)."""
    from collections.abc import AsyncGenerator

    from llmkernel.provider import ProviderConfig
    from llmkernel.types import ChatRequest, MetadataEvent, StreamEvent, TextDelta
    from llmkernel_http import HTTPProvider, aiter_ndjson

    class LineProvider(HTTPProvider):
        async def stream_events(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
            response = await self.send("POST", "/stream", model=request.model, json={})
            try:
                yield self.opened(response)
                async for line in aiter_ndjson(response.aiter_text()):
                    if "meta" in line:
                        yield MetadataEvent(id=line["meta"])
                    else:
                        yield TextDelta(text=line["text"])
            finally:
                await response.aclose()

    options = {"base_url": server.url, "api_key_env": "WIRE_TEST_KEY", **options}
    return LineProvider(ProviderConfig(name="p", type="lines", options=options))


async def test_first_token_timeout_waits_for_content_not_metadata(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from llmkernel.types import ChatRequest, Message
    from llmkernel_http.testing.fake_server import Pause

    monkeypatch.setenv("WIRE_TEST_KEY", "sk-wire-SECRET-1234")
    with FakeServer() as server:
        server.expect(
            "POST",
            "/stream",
            FakeResponse.ndjson([{"meta": "m1"}, {"text": "soon"}, Pause(0.6), {"text": "!"}]),
            FakeResponse.ndjson([{"meta": "m1"}, Pause(0.6), {"text": "late"}]),
        )
        provider = _base_provider(server, first_token_timeout=0.3)
        request = ChatRequest(model="m", messages=(Message.user("hi"),))
        import aiohttp  # noqa: F401  (imported at the first request: not timed here)

        # once content came, first_token_timeout no longer applies
        events = [e async for e in provider.stream(request)]  # type: ignore[attr-defined]
        assert [e.text for e in events if e.type == "text"] == ["soon", "!"]
        seen = []
        with pytest.raises(errors.TimeoutError, match="first_token_timeout"):
            async for event in provider.stream(request):  # type: ignore[attr-defined]
                seen.append(event.type)
        assert seen == ["metadata", "metadata"]  # metadata arrived; content did not
        await provider.aclose()  # type: ignore[attr-defined]


async def test_a_deadline_passed_while_the_consumer_held_an_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The consumer's time is not the server's: events already received are still
    delivered after the deadline, but a read that has to wait then fails at once."""
    from llmkernel.types import ChatRequest, Message
    from llmkernel_http.testing.fake_server import Pause

    monkeypatch.setenv("WIRE_TEST_KEY", "sk-wire-SECRET-1234")
    with FakeServer() as server:
        server.expect(
            "POST",
            "/stream",
            FakeResponse.ndjson([{"meta": "m1"}, {"meta": "m2"}, Pause(3.0), {"text": "late"}]),
        )
        provider = _base_provider(server, first_token_timeout=1.0)
        request = ChatRequest(model="m", messages=(Message.user("hi"),))
        import aiohttp  # noqa: F401  (imported at the first request: not timed here)

        seen = []
        with pytest.raises(errors.TimeoutError, match="first_token_timeout"):
            async for event in provider.stream(request):  # type: ignore[attr-defined]
                seen.append(event.type)
                if len(seen) == 1:
                    await asyncio.sleep(1.2)  # past the deadline, no read waiting
        # m2 was already received: delivered; "late" needed a wait: refused
        assert seen == ["metadata", "metadata", "metadata"]
        await provider.aclose()  # type: ignore[attr-defined]


async def test_base_redacts_secrets_and_sets_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmkernel.types import ChatRequest, Message

    secret = "sk-wire-SECRET-5678"
    monkeypatch.setenv("WIRE_TEST_KEY", secret)
    with FakeServer() as server:
        server.expect(
            "POST",
            "/stream",
            lambda request: FakeResponse.text_body(
                f"bad key {request.headers['authorization']}",
                status=401,
                headers={"x-ratelimit-remaining-requests": "0"},
            ),
        )
        provider = _base_provider(server)
        request = ChatRequest(model="m", messages=(Message.user("hi"),))
        with pytest.raises(errors.AuthenticationError) as info:
            async for _ in provider.stream(request):  # type: ignore[attr-defined]
                pass
        await provider.aclose()  # type: ignore[attr-defined]
    assert secret not in str(info.value) and secret not in repr(info.value)
    assert "bad key [redacted]" in str(info.value)
    assert info.value.headers["x-ratelimit-remaining-requests"] == "0"


# --------------------------------------------------------------------------- aiohttp transport


async def test_aiohttp_transport_streams_and_maps_failures() -> None:
    from llmkernel_http import AiohttpTransport

    gate = Gate()
    with FakeServer() as server:
        server.expect("GET", "/s", FakeResponse(pieces=[b"one", gate, b"two"]))
        server.expect("GET", "/cut", FakeResponse(pieces=[b"x"], truncate=True))
        async with httpx.AsyncClient(base_url=server.url, transport=AiohttpTransport()) as client:
            async with client.stream("GET", "/s") as response:
                chunks = response.aiter_bytes()
                assert await anext(chunks) == b"one"  # before the body ends
                gate.open()
                assert b"".join([c async for c in chunks]) == b"two"
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get("/cut")
            url = server.url
    async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(url + "/gone")


def test_default_transport_is_aiohttp_unless_asked() -> None:
    from llmkernel_http import AiohttpTransport, HTTPSettings, default_transport

    assert isinstance(default_transport(HTTPSettings()), AiohttpTransport)
    assert default_transport(HTTPSettings(http_client="httpx")) is None


#: the start of the scripts below: an OpenAI chat completion for the fake server
SCRIPT_START = __import__("textwrap").dedent(
    """
    import asyncio, json, os
    from llmkernel import Kernel
    import llmkernel_openai.plugin
    from llmkernel_http.testing.fake_server import FakeResponse, FakeServer

    answer = {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
              "choices": [{"index": 0, "finish_reason": "stop",
                           "message": {"role": "assistant", "content": "hi"}}],
              "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    """
)


@pytest.mark.parametrize("face", ["sync", "async"])
def test_a_kernel_never_closed_prints_no_unclosed_session_warning(face: str) -> None:
    """aiohttp prints "Unclosed client session" (and asyncio "unclosed transport")
    for a pool not closed by the time it is collected; a script that never closes
    its kernel must stay quiet: the provider's exit hook, registered with the
    kernel's lifecycle, closes both pools (aiohttp's, for the stream, and the
    kernel's own connections, for the chat)."""
    import subprocess
    import sys
    import textwrap

    pytest.importorskip("llmkernel_openai")
    script = SCRIPT_START + textwrap.dedent(
        """
        chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                 "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}
        server = FakeServer()
        server.expect("POST", "/v1/chat/completions", FakeResponse.json_body(answer))
        server.expect("POST", "/v1/chat/completions",
                      FakeResponse.sse([f"data: {json.dumps(chunk)}\\n\\n", "data: [DONE]\\n\\n"]))
        os.environ["NEVER_CLOSED_KEY"] = "k"
        kernel = Kernel.from_config(
            {"providers": {"p": {"type": "openai", "base_url": server.url + "/v1",
                                 "api_key_env": "NEVER_CLOSED_KEY"}}},
            plugins=[llmkernel_openai.plugin], entry_points=False)
        if FACE == "sync":
            print(kernel.chat(model="p/m", messages="x").text)
            print("".join(e.text for e in kernel.stream(model="p/m", messages="x")
                          if e.type == "text"))
        else:
            async def main():
                print((await kernel.achat(model="p/m", messages="x")).text)
                text = [e.text async for e in kernel.astream(model="p/m", messages="x")
                        if e.type == "text"]
                print("".join(text))
            asyncio.run(main())
        # never closed
        """
    ).replace("FACE", repr(face))
    done = subprocess.run(
        [sys.executable, "-W", "default", "-X", "dev", "-c", script],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["hi", "hi"]
    assert "Unclosed" not in done.stderr, done.stderr  # aiohttp's session and connector
    if face == "sync":
        # the kernel's loop is still there at exit: every socket is closed on it
        assert "unclosed" not in done.stderr, done.stderr
    # asyncio.run closed the loop under the open connections: asyncio's own
    # "unclosed transport" ResourceWarning is the script's (close the kernel: `async
    # with kernel`); no public API closes a transport of a closed loop


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_leaves_the_parents_connections_alone() -> None:
    """The provider's fork hook (through the kernel's lifecycle) drops the parent's
    connections in the child without closing them: the child makes calls on new
    connections and exits without closing its kernel (its exit hooks run), and the
    parent goes on with its own connection. (Closing the parent's connection in the
    child would take its socket out of the epoll set the two processes share: the
    parent's next answer would never be seen.)"""
    import subprocess
    import sys
    import textwrap

    pytest.importorskip("llmkernel_openai")
    script = SCRIPT_START + textwrap.dedent(
        """
        server = FakeServer()
        server.expect("POST", "/v1/chat/completions", FakeResponse.json_body(answer))
        os.environ["FORK_KEY"] = "k"
        kernel = Kernel.from_config(
            {"providers": {"p": {"type": "openai", "base_url": server.url + "/v1",
                                 "api_key_env": "FORK_KEY", "read_timeout": 3}},
             "retry": {"attempts": 1}},
            plugins=[llmkernel_openai.plugin], entry_points=False)
        print("parent", kernel.chat(model="p/m", messages="x").text, flush=True)
        pid = os.fork()
        if pid == 0:
            print("child", kernel.chat(model="p/m", messages="x").text, flush=True)
            raise SystemExit(0)  # a normal exit, the kernel not closed: exit hooks run
        os.waitpid(pid, 0)
        print("parent", kernel.chat(model="p/m", messages="x").text, flush=True)
        kernel.close()
        print("requests", len(server.requests))
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", script],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:4] == ["parent hi", "child hi", "parent hi", "requests 3"]
    # (the child's interpreter shutdown may report the parent's loop and socket it
    # held on to as "unclosed": they are the parent's, and are only let go of there)
    assert "Traceback" not in done.stderr and "Unclosed" not in done.stderr, done.stderr


def test_redaction_helpers_for_providers_off_the_base() -> None:
    from llmkernel_http import REDACTED, collect_secrets, redact, scrub

    secrets = collect_secrets(
        "sk-live-0123", {"Authorization": "Bearer tok-9876", "accept": "application/json"}
    )
    assert "tok-9876" in secrets and "Bearer tok-9876" in secrets and "sk-live-0123" in secrets
    assert "sk-live" not in repr(secrets) and "tok-9876" not in repr(secrets)
    assert redact("key sk-live-0123, auth Bearer tok-9876", secrets) == (
        f"key {REDACTED}, auth {REDACTED}"
    )
    error = errors.AuthenticationError(
        "bad key sk-live-0123", code="tok-9876", headers={"x-echo": "sk-live-0123"}
    )
    scrub(error, secrets)
    assert "sk-live-0123" not in str(error) and "sk-live-0123" not in repr(error)
    assert error.code == REDACTED and error.headers == {"x-echo": REDACTED}
