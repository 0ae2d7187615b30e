"""Streaming: the SSE events Anthropic sends, as kernel stream events."""

from __future__ import annotations

import time
from typing import Any

import pytest
from anthropic_wire import (
    MODEL,
    MSG_ID,
    REQUEST_ID,
    Route,
    block_start,
    block_stop,
    delta,
    error_event,
    error_response,
    event,
    json_delta,
    make_provider,
    message_delta,
    message_start,
    message_stop,
    ping,
    sse_response,
    text_delta,
    text_stream,
)

import llmkernel_anthropic.plugin
from llmkernel import errors
from llmkernel.kernel import Kernel
from llmkernel.types import (
    ChatRequest,
    FinishEvent,
    FinishReason,
    Message,
    MetadataEvent,
    Reasoning,
    ReasoningDelta,
    ReasoningPart,
    StreamEvent,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageEvent,
)
from llmkernel_anthropic.provider import AnthropicProvider
from llmkernel_http.testing.fake_server import FakeResponse, Pause

SIG = "ErUBCkYIARgCIkACJWxzySUOJzOlZ8WFdgQSbeQA3H1i5rfkKLV9eC4HN6Jcnrlw1NcnPRIPaTs9jLF3rllsfoid"
REDACTED = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPnZ5"
WEATHER = Tool(
    name="get_weather",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def request(**kwargs: Any) -> ChatRequest:
    return ChatRequest(model=MODEL, messages=(Message.user("hi"),), **kwargs)


async def collect(provider: AnthropicProvider, chat: ChatRequest) -> list[StreamEvent]:
    """The stream's events after the first, which carries the response headers."""
    events = [e async for e in provider.stream(chat)]
    assert isinstance(events[0], MetadataEvent) and events[0].headers is not None
    assert "content-type" in events[0].headers
    return events[1:]


def kernel_for(route: Route, **options: Any) -> Kernel:
    config = {
        "providers": {"p": {"type": "anthropic", "base_url": route.base_url, **options}},
        "retry": {"attempts": 1, "initial_wait": 0.0, "max_wait": 0.0},
    }
    return Kernel.from_config(config, plugins=[llmkernel_anthropic.plugin], entry_points=False)


START_USAGE = {
    "input_tokens": 778,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
    "output_tokens": 5,
}


async def test_text_stream_request_and_events(route: Route, provider: AnthropicProvider) -> None:
    route.expect(
        "POST",
        "/v1/messages",
        sse_response(
            text_stream(
                ["Hello", " there"], usage_start=START_USAGE, usage_end={"output_tokens": 104}
            )
        ),
    )
    events = await collect(provider, request())
    assert events == [
        MetadataEvent(id=MSG_ID, model=MODEL),
        TextDelta(text="Hello"),
        TextDelta(text=" there"),
        UsageEvent(usage=Usage(input_tokens=778, output_tokens=104)),
        FinishEvent(finish_reason="stop"),
    ]
    sent = route.requests[-1]
    assert sent.json()["stream"] is True
    assert sent.headers["accept"] == "text/event-stream"
    assert sent.headers["x-api-key"]


async def test_thinking_stream_with_signature_and_redacted(
    route: Route, provider: AnthropicProvider
) -> None:
    pieces = [
        message_start(START_USAGE),
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        ping(),
        delta(0, {"type": "thinking_delta", "thinking": "The user said hey."}),
        delta(0, {"type": "thinking_delta", "thinking": " Greet back."}),
        delta(0, {"type": "signature_delta", "signature": SIG}),
        block_stop(0),
        block_start(1, {"type": "redacted_thinking", "data": REDACTED}),
        block_stop(1),
        block_start(2, {"type": "text", "text": ""}),
        text_delta(2, "Hello!"),
        delta(2, {"type": "citations_delta", "citation": {"type": "char_location"}}),
        block_stop(2),
        message_delta("end_turn", {"output_tokens": 104}),
        message_stop(),
    ]
    route.expect("POST", "/v1/messages", sse_response(pieces))
    events = await collect(provider, request(reasoning=Reasoning(budget_tokens=2048)))
    assert route.body()["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert events == [
        MetadataEvent(id=MSG_ID, model=MODEL),
        ReasoningDelta(text="The user said hey.", index=0),
        ReasoningDelta(text=" Greet back.", index=0),
        ReasoningDelta(signature=SIG, index=0),
        ReasoningDelta(redacted=REDACTED, index=1),
        TextDelta(text="Hello!"),
        UsageEvent(usage=Usage(input_tokens=778, output_tokens=104)),
        FinishEvent(finish_reason="stop"),
    ]


async def test_streamed_thinking_round_trips_through_the_kernel(route: Route, api_key: str) -> None:
    pieces = [
        message_start(START_USAGE),
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        delta(0, {"type": "thinking_delta", "thinking": "Need the weather tool."}),
        delta(0, {"type": "signature_delta", "signature": SIG}),
        block_stop(0),
        block_start(1, {"type": "tool_use", "id": "toolu_7", "name": "get_weather", "input": {}}),
        json_delta(1, '{"city": '),
        json_delta(1, '"Paris"}'),
        block_stop(1),
        message_delta("tool_use", {"output_tokens": 60}),
        message_stop(),
    ]
    route.expect(
        "POST",
        "/v1/messages",
        sse_response(pieces),
        sse_response(
            text_stream(["It is", " 18C."], usage_start=START_USAGE, usage_end={"output_tokens": 9})
        ),
    )
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    async with kernel_for(route) as kernel:
        first = kernel.astream(
            model=f"p/{MODEL}",
            messages=messages,
            tools=[WEATHER],
            reasoning={"budget_tokens": 2048},
        )
        async for _ in first:
            pass
        assert first.response is not None
        assert first.response.finish_reason == "tool_calls"
        assert first.response.message.content == (
            ReasoningPart(text="Need the weather tool.", signature=SIG),
        )
        assert first.response.tool_calls == (
            ToolCall(id="toolu_7", name="get_weather", arguments={"city": "Paris"}),
        )
        messages += [
            first.response.message,
            {"role": "tool", "tool_call_id": "toolu_7", "content": "18C"},
        ]
        second = kernel.astream(
            model=f"p/{MODEL}",
            messages=messages,
            tools=[WEATHER],
            reasoning={"budget_tokens": 2048},
        )
        async for _ in second:
            pass
    assert second.response is not None and second.response.text == "It is 18C."
    assert route.body()["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Need the weather tool.", "signature": SIG},
                {
                    "type": "tool_use",
                    "id": "toolu_7",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_7", "content": "18C"}],
        },
    ]


async def test_tool_fragments_are_keyed_by_tool_index(
    route: Route, provider: AnthropicProvider
) -> None:
    pieces = [
        message_start(),
        block_start(0, {"type": "text", "text": ""}),
        text_delta(0, "Checking both."),
        block_stop(0),
        block_start(1, {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {}}),
        delta(1, {"type": "input_json_delta"}),
        json_delta(1, '{"city"'),
        json_delta(1, ': "Par'),
        json_delta(1, 'is"}'),
        block_stop(1),
        block_start(2, {"type": "tool_use", "id": "toolu_B", "name": "get_weather", "input": {}}),
        json_delta(2, '{"city": "Tokyo"}'),
        block_stop(2),
        message_delta("tool_use", {"output_tokens": 80}),
        message_stop(),
    ]
    route.expect("POST", "/v1/messages", sse_response(pieces))
    events = await collect(provider, request(tools=(WEATHER,)))
    assert [e for e in events if isinstance(e, ToolCallDelta)] == [
        ToolCallDelta(index=0, id="toolu_A", name="get_weather", arguments=""),
        ToolCallDelta(index=0, arguments='{"city"'),
        ToolCallDelta(index=0, arguments=': "Par'),
        ToolCallDelta(index=0, arguments='is"}'),
        ToolCallDelta(index=1, id="toolu_B", name="get_weather", arguments=""),
        ToolCallDelta(index=1, arguments='{"city": "Tokyo"}'),
    ]
    assert events[-1] == FinishEvent(finish_reason="tool_calls")


async def test_stream_usage_merges_start_and_cumulative_delta(
    route: Route, provider: AnthropicProvider
) -> None:
    start = {
        "input_tokens": 4,
        "cache_creation_input_tokens": 36,
        "cache_read_input_tokens": 18264,
        "output_tokens": 1,
    }
    # newer API versions repeat the cumulative input counts in message_delta;
    # a delta may also carry a stray 0, which must not erase message_start's count
    end = {"input_tokens": 0, "cache_read_input_tokens": 18264, "output_tokens": 58}
    route.expect(
        "POST",
        "/v1/messages",
        sse_response(text_stream(["a", "b"], usage_start=start, usage_end=end)),
    )
    events = await collect(provider, request())
    usage_events = [e for e in events if isinstance(e, UsageEvent)]
    assert usage_events == [
        UsageEvent(
            usage=Usage(
                input_tokens=4 + 36 + 18264,
                output_tokens=58,
                cached_input_tokens=18264,
                cache_write_tokens=36,
            )
        )
    ]
    assert events[-2:] == [usage_events[0], FinishEvent(finish_reason="stop")]


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("pause_turn", "stop"),
    ],
)
async def test_stream_stop_reasons(
    route: Route, provider: AnthropicProvider, stop_reason: str, finish: FinishReason
) -> None:
    route.expect(
        "POST",
        "/v1/messages",
        sse_response(
            text_stream(
                ["a", "b"],
                usage_start=START_USAGE,
                usage_end={"output_tokens": 3},
                stop_reason=stop_reason,
            )
        ),
    )
    events = await collect(provider, request())
    assert events[-1] == FinishEvent(finish_reason=finish)


async def test_stream_refusal(route: Route, api_key: str) -> None:
    pieces = [
        message_start(),
        block_start(0, {"type": "text", "text": ""}),
        text_delta(0, "Hello.."),
        block_stop(0),
        message_delta(
            "refusal",
            {"output_tokens": 3},
            stop_details={
                "type": "refusal",
                "category": "cyber",
                "explanation": "Declined: cyber harm.",
            },
        ),
        message_stop(),
    ]
    route.expect("POST", "/v1/messages", sse_response(pieces))
    async with kernel_for(route) as kernel:
        stream = kernel.astream(model=f"p/{MODEL}", messages="hi")
        events = [e async for e in stream]
    assert events[-1].type == "finish" and events[-1].finish_reason == "content_filter"
    assert stream.response is not None
    assert stream.response.refusal == "Declined: cyber harm."
    assert stream.response.finish_reason == "content_filter"


async def test_streamed_structured_output_is_text(route: Route, api_key: str) -> None:
    pieces = [
        message_start(),
        block_start(0, {"type": "tool_use", "id": "toolu_S", "name": "report", "input": {}}),
        json_delta(0, '{"city": "Pa'),
        json_delta(0, 'ris", "celsius": 18}'),
        block_stop(0),
        message_delta("tool_use", {"output_tokens": 20}),
        message_stop(),
    ]
    route.expect("POST", "/v1/messages", sse_response(pieces))
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "celsius": {"type": "number"}},
    }
    async with kernel_for(route) as kernel:
        stream = kernel.astream(
            model=f"p/{MODEL}",
            messages="Weather?",
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "report", "schema": schema},
            },
        )
        events = [e async for e in stream]
    assert [e.text for e in events if e.type == "text"] == ['{"city": "Pa', 'ris", "celsius": 18}']
    assert not any(e.type == "tool_call" for e in events)
    assert stream.response is not None
    assert stream.response.parsed == {"city": "Paris", "celsius": 18}
    assert stream.response.finish_reason == "stop"
    assert stream.response.tool_calls == ()
    assert route.body()["tool_choice"] == {"type": "tool", "name": "report"}


async def test_split_chunks_and_crlf_framing(route: Route, provider: AnthropicProvider) -> None:
    whole = "".join(
        str(p)
        for p in text_stream(
            ["Hé", "llo ", "wörld"], usage_start=START_USAGE, usage_end={"output_tokens": 7}
        )
    )
    crlf = whole.replace("\n", "\r\n").encode()
    # split everywhere, including inside multi-byte UTF-8 characters and CRLF pairs
    pieces: list[Any] = [crlf[i : i + 7] for i in range(0, len(crlf), 7)]
    route.expect("POST", "/v1/messages", sse_response(pieces))
    events = await collect(provider, request())
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Héllo wörld"
    assert events[-1] == FinishEvent(finish_reason="stop")


async def test_unknown_events_and_blocks_are_ignored(
    route: Route, provider: AnthropicProvider
) -> None:
    pieces = [
        message_start(),
        ": a comment line\n\n",
        event("future_event", {"type": "future_event", "x": 1}),
        block_start(
            0, {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}
        ),
        json_delta(0, '{"query": "x"}'),
        block_stop(0),
        block_start(1, {"type": "text", "text": ""}),
        text_delta(1, "Found it."),
        block_stop(1),
        message_delta("end_turn", {"output_tokens": 5}),
        message_stop(),
    ]
    route.expect("POST", "/v1/messages", sse_response(pieces))
    events = await collect(provider, request())
    assert [e for e in events if isinstance(e, TextDelta | ToolCallDelta)] == [
        TextDelta(text="Found it.")
    ]


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("kind", "expected", "status"),
    [
        ("overloaded_error", errors.OverloadedError, 529),
        ("api_error", errors.ServerError, 500),
        ("rate_limit_error", errors.RateLimitError, 429),
        ("invalid_request_error", errors.InvalidRequestError, 400),
    ],
)
async def test_error_event_inside_a_200_stream(
    route: Route, provider: AnthropicProvider, kind: str, expected: type[Exception], status: int
) -> None:
    pieces = [
        message_start(),
        block_start(0, {"type": "text", "text": ""}),
        text_delta(0, "Partial"),
        error_event(kind, "Overloaded"),
    ]
    route.expect("POST", "/v1/messages", sse_response(pieces))
    seen: list[StreamEvent] = []
    with pytest.raises(errors.ProviderError) as info:
        async for e in provider.stream(request()):
            seen.append(e)
    assert type(info.value) is expected
    assert status >= 400  # the type's documented status decides the kind...
    assert info.value.status == 200  # ...and the error keeps the HTTP status
    assert kind in str(info.value)  # the provider's error type is in the message
    assert info.value.request_id == REQUEST_ID
    assert info.value.provider == "p" and info.value.model == MODEL
    assert TextDelta(text="Partial") in seen


async def test_error_right_after_message_start_is_retried(route: Route, api_key: str) -> None:
    """No event is yielded before the error, so the kernel can still retry."""
    route.expect(
        "POST",
        "/v1/messages",
        sse_response([message_start(), ping(), error_event("overloaded_error", "Overloaded")]),
        sse_response(
            text_stream(["second", " try"], usage_start=START_USAGE, usage_end={"output_tokens": 2})
        ),
    )
    config = {
        "providers": {"p": {"type": "anthropic", "base_url": route.base_url}},
        "retry": {"attempts": 2, "initial_wait": 0.0, "max_wait": 0.0},
    }
    kernel = Kernel.from_config(config, plugins=[llmkernel_anthropic.plugin], entry_points=False)
    async with kernel:
        stream = kernel.astream(model=f"p/{MODEL}", messages="hi")
        events = [e async for e in stream]
    assert [e.type for e in events] == ["text", "text", "usage", "finish"]
    assert stream.response is not None
    assert stream.response.text == "second try"
    assert stream.response.attempts == 2
    assert len(route.requests) == 2


async def test_http_error_before_the_stream(route: Route, provider: AnthropicProvider) -> None:
    route.expect(
        "POST",
        "/v1/messages",
        error_response(429, "rate_limit_error", "slow down", {"retry-after": "3"}),
    )
    with pytest.raises(errors.RateLimitError) as info:
        await collect(provider, request())
    assert info.value.retry_after == 3.0
    assert info.value.status == 429 and info.value.request_id == REQUEST_ID


async def test_stream_without_message_stop_is_a_network_error(
    route: Route, provider: AnthropicProvider
) -> None:
    pieces = [
        message_start(),
        block_start(0, {"type": "text", "text": ""}),
        text_delta(0, "Hello"),
        block_stop(0),
    ]  # a complete body, but no message_stop
    route.expect("POST", "/v1/messages", sse_response(pieces))
    with pytest.raises(errors.NetworkError) as info:
        await collect(provider, request())
    assert "message_stop" in info.value.message
    assert info.value.retryable and info.value.request_id == REQUEST_ID


@pytest.mark.parametrize("reset", [False, True], ids=["cut", "reset"])
async def test_cut_and_reset_streams(
    route: Route, provider: AnthropicProvider, reset: bool
) -> None:
    pieces = [message_start(), block_start(0, {"type": "text", "text": ""}), text_delta(0, "Hel")]
    route.expect("POST", "/v1/messages", sse_response(pieces, truncate=not reset, reset=reset))
    seen: list[StreamEvent] = []
    with pytest.raises(errors.NetworkError) as info:
        async for e in provider.stream(request()):
            seen.append(e)
    assert TextDelta(text="Hel") in seen
    assert info.value.retryable and info.value.provider == "p"


async def test_empty_200_stream_is_a_network_error(
    route: Route, provider: AnthropicProvider
) -> None:
    route.expect("POST", "/v1/messages", sse_response([]))
    with pytest.raises(errors.NetworkError, match="before any event"):
        await collect(provider, request())


@pytest.mark.parametrize(
    ("response", "what"),
    [
        (FakeResponse.json_body({"id": "msg_1", "content": []}), "not an event stream"),
        (FakeResponse.sse(["event: message_start\ndata: <html>\n\n"]), "not JSON"),
        (FakeResponse.sse(["data: [1, 2]\n\n"]), "not a JSON object"),
        (FakeResponse.sse([message_start(), text_delta(0, "orphan")]), "never started"),
        (
            FakeResponse.sse(
                [
                    message_start(),
                    event(
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": "0",
                            "content_block": {"type": "text", "text": ""},
                        },
                    ),
                ]
            ),
            "integer index",
        ),
        (
            FakeResponse.sse(
                [
                    message_start(),
                    block_start(0, {"type": "text"}),
                    delta(0, {"type": "text_delta", "text": 7}),
                ]
            ),
            "not a string",
        ),
        (
            FakeResponse.sse([event("error", {"type": "error", "error": "boom"})]),
            "without an error object",
        ),
    ],
)
async def test_malformed_streams(
    route: Route, provider: AnthropicProvider, response: FakeResponse, what: str
) -> None:
    route.expect("POST", "/v1/messages", response)
    with pytest.raises(errors.MalformedResponseError) as info:
        await collect(provider, request())
    assert what in info.value.message
    assert info.value.provider == "p"


async def test_first_token_timeout(route: Route, api_key: str) -> None:
    provider = make_provider(route.base_url, first_token_timeout=0.3)
    route.expect(
        "POST",
        "/v1/messages",
        sse_response([message_start(), ping(), Pause(1.5), text_delta(0, "late")]),
    )
    started = time.monotonic()
    with pytest.raises(errors.TimeoutError, match="first_token_timeout") as info:
        await collect(provider, request())
    await provider.aclose()
    assert time.monotonic() - started < 1.2
    assert info.value.retryable


async def test_first_token_timeout_stops_once_text_flows(route: Route, api_key: str) -> None:
    provider = make_provider(route.base_url, first_token_timeout=0.3)
    pieces = text_stream(
        ["first", " late"],
        usage_start=START_USAGE,
        usage_end={"output_tokens": 2},
        between=Pause(0.5),
    )
    route.expect("POST", "/v1/messages", sse_response(pieces))
    events = await collect(provider, request())
    await provider.aclose()
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "first late"


async def test_total_timeout_covers_the_whole_stream(route: Route, api_key: str) -> None:
    provider = make_provider(route.base_url, timeout=0.4)
    pieces = text_stream(
        ["a", "b"], usage_start=START_USAGE, usage_end={"output_tokens": 2}, between=Pause(1.5)
    )
    route.expect("POST", "/v1/messages", sse_response(pieces))
    seen: list[StreamEvent] = []
    started = time.monotonic()
    with pytest.raises(errors.TimeoutError, match=r"timeout=0\.4"):
        async for e in provider.stream(request()):
            seen.append(e)
    await provider.aclose()
    assert time.monotonic() - started < 1.2
    assert TextDelta(text="a") in seen


async def test_closing_the_stream_early_releases_the_connection(
    route: Route, provider: AnthropicProvider
) -> None:
    route.expect(
        "POST",
        "/v1/messages",
        sse_response(
            text_stream(["a", "b", "c"], usage_start=START_USAGE, usage_end={"output_tokens": 3})
        ),
    )
    for _ in range(3):
        stream = provider.stream(request())
        async for e in stream:
            if isinstance(e, TextDelta):
                break
        await stream.aclose()  # type: ignore[attr-defined]
    events = await collect(provider, request())
    assert [e.type for e in events] == ["metadata", "text", "text", "text", "usage", "finish"]
    assert len(route.requests) == 4
