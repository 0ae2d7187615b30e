"""Chat and streaming against a fake Ollama server: what is sent, what comes back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ollama_wire import PNG, call, chunk, final

from llmkernel import errors
from llmkernel.provider import ProviderConfig
from llmkernel.types import (
    ChatRequest,
    FinishEvent,
    ImagePart,
    Message,
    MetadataEvent,
    Reasoning,
    ReasoningDelta,
    ReasoningPart,
    ResponseFormat,
    StreamEvent,
    TextDelta,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
    UsageEvent,
)
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer, Pause
from llmkernel_ollama.provider import OllamaProvider

MODEL = "llama3.2"
WEATHER = Tool(
    name="get_weather",
    description="Current weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
TIME = Tool(name="get_time", description="The time.", parameters={"type": "object"})


def make(server: FakeServer, **options: Any) -> OllamaProvider:
    return OllamaProvider(
        ProviderConfig(
            name="local",
            type="ollama",
            options={"base_url": server.url, **options},
            where="[providers.local] in test",
        )
    )


def request(*messages: Message, **fields: Any) -> ChatRequest:
    return ChatRequest(
        model=fields.pop("model", MODEL), messages=messages or (Message.user("hi"),), **fields
    )


async def collect(provider: OllamaProvider, req: ChatRequest) -> list[StreamEvent]:
    """The stream's events after the first, which carries the response headers."""
    try:
        events = [event async for event in provider.stream(req)]
    finally:
        await provider.aclose()
    assert isinstance(events[0], MetadataEvent) and events[0].headers is not None
    assert "content-type" in events[0].headers
    return events[1:]


# ------------------------------------------------------------------ request body


async def test_chat_body_carries_options_and_no_auth_by_default(server: FakeServer) -> None:
    server.expect("POST", "/api/chat", FakeResponse.json_body(final(MODEL, content="ok")))
    provider = make(
        server, num_ctx=8192, keep_alive="10m", model_options={"top_k": 20, "repeat_penalty": 1.1}
    )
    response = await provider.chat(
        request(
            Message.system("Be brief."),
            Message.user("hi"),
            temperature=0.2,
            top_p=0.9,
            max_tokens=100,
            stop=("\n\n", "User:"),
            options={"seed": 42, "top_k": 5, "think": False},
        )
    )
    await provider.aclose()
    assert response.text == "ok"
    sent = server.requests[0]
    assert sent.method == "POST" and sent.path == "/api/chat"
    assert "authorization" not in sent.headers
    assert sent.headers["content-type"] == "application/json"
    assert sent.json() == {
        "model": MODEL,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "stream": False,
        "keep_alive": "10m",
        "think": False,
        "options": {
            "top_k": 5,
            "repeat_penalty": 1.1,
            "num_ctx": 8192,
            "temperature": 0.2,
            "top_p": 0.9,
            "num_predict": 100,
            "stop": ["\n\n", "User:"],
            "seed": 42,
        },
    }


async def test_minimal_body_has_no_options(server: FakeServer) -> None:
    server.expect("POST", "/api/chat", FakeResponse.json_body(final(MODEL, content="ok")))
    provider = make(server)
    await provider.chat(request())
    await provider.aclose()
    assert server.requests[0].json() == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": False,
    }


async def test_base_url_written_with_api_suffix_still_works(server: FakeServer) -> None:
    server.expect("POST", "/api/chat", FakeResponse.json_body(final(MODEL, content="ok")))
    provider = make(server, base_url=server.url + "/api/")
    assert (await provider.chat(request())).text == "ok"
    await provider.aclose()
    assert server.requests[0].path == "/api/chat"


async def test_bearer_key_from_env_when_configured(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", "ollama-SECRET-123")
    server.expect("POST", "/api/chat", FakeResponse.json_body(final(MODEL, content="ok")))
    provider = make(server, api_key_env="OLLAMA_API_KEY")
    assert "ollama-SECRET-123" not in repr(provider)
    await provider.chat(request())
    await provider.aclose()
    assert server.requests[0].headers["authorization"] == "Bearer ollama-SECRET-123"


async def test_missing_key_variable_is_named(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    provider = make(server, api_key_env="OLLAMA_API_KEY")
    with pytest.raises(errors.AuthenticationError, match="OLLAMA_API_KEY") as info:
        await provider.chat(request())
    assert info.value.provider == "local" and info.value.model == MODEL
    assert server.requests == []


async def test_one_pooled_client_is_reused_and_closed(server: FakeServer) -> None:
    server.expect("POST", "/api/chat", FakeResponse.json_body(final(MODEL, content="ok")))
    provider = make(server)
    await provider.chat(request())
    client = provider._client
    await provider.chat(request())
    assert provider._client is client and client is not None
    await provider.aclose()
    assert client.is_closed and provider._client is None
    assert len(server.requests) == 2


# ------------------------------------------------------------------ images


async def test_images_go_inline_as_base64(server: FakeServer) -> None:
    server.expect("POST", "/api/chat", FakeResponse.json_body(final(MODEL, content="a dot")))
    provider = make(server)
    message = Message(
        role="user",
        content=(
            TextPart(text="What is in these?"),
            ImagePart(data=PNG, media_type="image/png"),
            ImagePart(url=f"data:image/png;base64,{PNG}"),
        ),
    )
    await provider.chat(request(message, model="gemma3:4b"))
    await provider.aclose()
    assert server.requests[0].json()["messages"] == [
        {"role": "user", "content": "What is in these?", "images": [PNG, PNG]},
    ]


async def test_image_urls_are_refused_before_sending(server: FakeServer) -> None:
    provider = make(server)
    message = Message(
        role="user",
        content=(TextPart(text="What is this?"), ImagePart(url="https://example.com/cat.png")),
    )
    with pytest.raises(errors.InvalidRequestError, match="cannot fetch an image URL") as info:
        await provider.chat(request(message))
    assert info.value.provider == "local"
    assert server.requests == []


# ------------------------------------------------------------------ tools


async def test_tool_specs_and_history_shape(server: FakeServer) -> None:
    server.expect("POST", "/api/chat", FakeResponse.json_body(final(MODEL, content="18C")))
    provider = make(server)
    history = (
        Message.user("Weather in Paris and the time?"),
        Message(
            role="assistant",
            content=(ReasoningPart(text="Two tools."),),
            tool_calls=(
                ToolCall(id="call_0", name="get_weather", arguments={"city": "Paris"}),
                ToolCall(id="call_1", name="get_time", arguments={}),
            ),
        ),
        Message.tool_result("call_0", "18C and sunny"),
        Message.tool_result("call_1", "12:00", name="get_time"),
    )
    await provider.chat(request(*history, tools=(WEATHER, TIME)))
    await provider.aclose()
    body = server.requests[0].json()
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        },
        {
            "type": "function",
            "function": {
                "name": "get_time",
                "description": "The time.",
                "parameters": {"type": "object"},
            },
        },
    ]
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": "",
            "thinking": "Two tools.",
            "tool_calls": [
                {
                    "id": "call_0",
                    "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}},
                },
                {"id": "call_1", "function": {"index": 1, "name": "get_time", "arguments": {}}},
            ],
        },
        {
            "role": "tool",
            "content": "18C and sunny",
            "tool_name": "get_weather",
            "tool_call_id": "call_0",
        },
        {"role": "tool", "content": "12:00", "tool_name": "get_time", "tool_call_id": "call_1"},
    ]


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        (None, ["get_weather", "get_time"]),
        (ToolChoice(mode="auto"), ["get_weather", "get_time"]),
        (ToolChoice(mode="required"), ["get_weather", "get_time"]),
        (ToolChoice(mode="tool", name="get_time"), ["get_time"]),
        (ToolChoice(mode="none"), None),
    ],
    ids=["default", "auto", "required", "named", "none"],
)
async def test_tool_choice_without_a_wire_field(
    server: FakeServer, choice: ToolChoice | None, sent: list[str] | None
) -> None:
    server.expect("POST", "/api/chat", FakeResponse.json_body(final(MODEL, content="ok")))
    provider = make(server)
    await provider.chat(request(tools=(WEATHER, TIME), tool_choice=choice))
    await provider.aclose()
    body = server.requests[0].json()
    assert "tool_choice" not in body
    if sent is None:
        assert "tools" not in body
    else:
        assert [t["function"]["name"] for t in body["tools"]] == sent


async def test_unknown_forced_tool_is_refused(server: FakeServer) -> None:
    provider = make(server)
    with pytest.raises(errors.InvalidRequestError, match="nope"):
        await provider.chat(
            request(tools=(WEATHER,), tool_choice=ToolChoice(mode="tool", name="nope"))
        )
    assert server.requests == []


async def test_chat_tool_calls_keep_wire_ids_and_make_missing_ones(server: FakeServer) -> None:
    server.expect(
        "POST",
        "/api/chat",
        FakeResponse.json_body(
            final(
                MODEL,
                tool_calls=[
                    call("get_weather", {"city": "Paris"}, call_id="call_abc"),
                    call("get_time", {}),
                ],
                prompt=122,
                output=33,
            )
        ),
    )
    provider = make(server)
    response = await provider.chat(request(tools=(WEATHER, TIME)))
    await provider.aclose()
    assert response.finish_reason == "tool_calls"  # Ollama says "stop"
    assert response.tool_calls == (
        ToolCall(id="call_abc", name="get_weather", arguments={"city": "Paris"}),
        ToolCall(id="call_1", name="get_time", arguments={}),
    )
    assert response.usage == Usage(input_tokens=122, output_tokens=33)


async def test_stream_tool_calls_arrive_whole(server: FakeServer) -> None:
    server.expect(
        "POST",
        "/api/chat",
        FakeResponse.ndjson(
            [
                chunk(MODEL, content="Checking. "),
                chunk(MODEL, tool_calls=[call("get_weather", {"city": "Paris"}, index=0)]),
                chunk(
                    MODEL,
                    tool_calls=[
                        call("get_weather", {"city": "Tokyo, Japan"}, index=1),
                        call("get_time", {}, call_id="t-9"),
                    ],
                ),
                final(MODEL, prompt=122, output=40),
            ]
        ),
    )
    events = await collect(make(server), request(tools=(WEATHER, TIME)))
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert calls == [
        ToolCallDelta(index=0, id="call_0", name="get_weather", arguments='{"city":"Paris"}'),
        ToolCallDelta(
            index=1, id="call_1", name="get_weather", arguments='{"city":"Tokyo, Japan"}'
        ),
        ToolCallDelta(index=2, id="t-9", name="get_time", arguments="{}"),
    ]
    assert [json.loads(c.arguments) for c in calls] == [
        {"city": "Paris"},
        {"city": "Tokyo, Japan"},
        {},
    ]
    assert events[-2:] == [
        UsageEvent(usage=Usage(input_tokens=122, output_tokens=40)),
        FinishEvent(finish_reason="tool_calls"),
    ]
    assert server.requests[0].json()["stream"] is True


@pytest.mark.parametrize("arguments", ['{"city": ', "[1, 2]", 42])
async def test_bad_tool_arguments_are_malformed(server: FakeServer, arguments: Any) -> None:
    server.expect(
        "POST",
        "/api/chat",
        FakeResponse.json_body(
            final(MODEL, tool_calls=[{"function": {"name": "get_weather", "arguments": arguments}}])
        ),
    )
    provider = make(server)
    with pytest.raises(errors.MalformedResponseError, match="arguments") as info:
        await provider.chat(request(tools=(WEATHER,)))
    await provider.aclose()
    assert info.value.provider == "local"


# ------------------------------------------------------------------ reasoning


@pytest.mark.parametrize(
    ("model", "reasoning", "think"),
    [
        ("qwen3:8b", Reasoning(effort="high"), True),
        ("qwen3:8b", Reasoning(effort="minimal"), False),
        ("qwen3:8b", Reasoning(budget_tokens=0), False),
        ("deepseek-r1", Reasoning(budget_tokens=4096), True),
        ("deepseek-r1", Reasoning(), True),
        ("gpt-oss:20b", Reasoning(effort="high"), "high"),
        ("gpt-oss:20b", Reasoning(effort="minimal"), "low"),
        ("gpt-oss:120b-cloud", Reasoning(budget_tokens=1024), "low"),
        ("gpt-oss:20b", Reasoning(budget_tokens=5000), "medium"),
        ("gpt-oss:20b", Reasoning(budget_tokens=20000), "high"),
        ("qwen3", None, None),
    ],
)
async def test_reasoning_becomes_think(
    server: FakeServer, model: str, reasoning: Reasoning | None, think: bool | str | None
) -> None:
    server.expect("POST", "/api/chat", FakeResponse.json_body(final(model, content="4")))
    provider = make(server)
    await provider.chat(request(model=model, reasoning=reasoning))
    await provider.aclose()
    body = server.requests[0].json()
    assert body.get("think") == think
    assert ("think" in body) is (think is not None)


async def test_chat_thinking_becomes_a_reasoning_part(server: FakeServer) -> None:
    server.expect(
        "POST",
        "/api/chat",
        FakeResponse.json_body(
            final(
                "qwen3",
                thinking="Count: s-t-r-a-w-b-e-r-r-y.",
                content="There are 3.",
                prompt=20,
                output=57,
            )
        ),
    )
    provider = make(server)
    response = await provider.chat(request(model="qwen3", reasoning=Reasoning(effort="low")))
    await provider.aclose()
    assert response.message.content == (
        ReasoningPart(text="Count: s-t-r-a-w-b-e-r-r-y."),
        TextPart(text="There are 3."),
    )
    assert response.reasoning == "Count: s-t-r-a-w-b-e-r-r-y."
    # eval_count includes the thinking; Ollama does not count it apart.
    assert response.usage == Usage(input_tokens=20, output_tokens=57)
    assert response.model == "qwen3"


async def test_stream_thinking_then_text(server: FakeServer) -> None:
    server.expect(
        "POST",
        "/api/chat",
        FakeResponse.ndjson(
            [
                chunk("qwen3", thinking="Let me "),
                chunk("qwen3", thinking="count."),
                chunk("qwen3", content="There are "),
                chunk("qwen3", content="3."),
                final("qwen3", prompt=20, output=57),
            ]
        ),
    )
    events = await collect(make(server), request(model="qwen3", reasoning=Reasoning()))
    assert events == [
        MetadataEvent(model="qwen3"),
        ReasoningDelta(text="Let me "),
        ReasoningDelta(text="count."),
        TextDelta(text="There are "),
        TextDelta(text="3."),
        UsageEvent(usage=Usage(input_tokens=20, output_tokens=57)),
        FinishEvent(finish_reason="stop"),
    ]


# ------------------------------------------------------------------ structured output


async def test_json_schema_goes_in_format_and_comes_back_parsed(server: FakeServer) -> None:
    schema = {
        "type": "object",
        "properties": {"age": {"type": "integer"}, "available": {"type": "boolean"}},
        "required": ["age", "available"],
    }
    server.expect(
        "POST",
        "/api/chat",
        FakeResponse.json_body(
            final("llama3.1", content='{"age": 22, "available": false}', prompt=34, output=12)
        ),
    )
    provider = make(server)
    response = await provider.chat(
        request(model="llama3.1", response_format=ResponseFormat(type="json_schema", schema=schema))
    )
    await provider.aclose()
    assert server.requests[0].json()["format"] == schema
    assert response.parsed == {"age": 22, "available": False}


async def test_json_object_is_format_json(server: FakeServer) -> None:
    server.expect(
        "POST",
        "/api/chat",
        FakeResponse.json_body(final(MODEL, content='{"morning": {"color": "blue"}}')),
    )
    provider = make(server)
    response = await provider.chat(request(response_format=ResponseFormat(type="json_object")))
    await provider.aclose()
    assert server.requests[0].json()["format"] == "json"
    assert response.parsed == {"morning": {"color": "blue"}}


async def test_cut_json_leaves_parsed_empty(server: FakeServer) -> None:
    server.expect(
        "POST",
        "/api/chat",
        FakeResponse.json_body(final(MODEL, content='{"morning": {"col', done_reason="length")),
    )
    provider = make(server)
    response = await provider.chat(
        request(response_format=ResponseFormat(type="json_object"), max_tokens=8)
    )
    await provider.aclose()
    assert response.finish_reason == "length"
    assert response.parsed is None


async def test_plain_text_is_not_parsed(server: FakeServer) -> None:
    server.expect("POST", "/api/chat", FakeResponse.json_body(final(MODEL, content="{}")))
    provider = make(server)
    response = await provider.chat(request())
    await provider.aclose()
    assert response.parsed is None and response.refusal is None


# ------------------------------------------------------------------ usage and finish


async def test_cached_prompt_without_prompt_eval_count_is_zero_input(server: FakeServer) -> None:
    server.expect(
        "POST",
        "/api/chat",
        FakeResponse.json_body(final(MODEL, content="again", prompt=None, output=5)),
    )
    provider = make(server)
    response = await provider.chat(request())
    await provider.aclose()
    assert response.usage == Usage(input_tokens=0, output_tokens=5)


async def test_stream_length_finish_and_usage(server: FakeServer) -> None:
    server.expect(
        "POST",
        "/api/chat",
        FakeResponse.ndjson(
            [
                chunk(MODEL, content="The sky"),
                chunk(MODEL, content=" is"),
                final(MODEL, done_reason="length", prompt=26, output=3),
            ]
        ),
    )
    events = await collect(make(server), request(max_tokens=3))
    assert events[-2:] == [
        UsageEvent(usage=Usage(input_tokens=26, output_tokens=3)),
        FinishEvent(finish_reason="length"),
    ]
    assert server.requests[0].json()["options"] == {"num_predict": 3}


# ------------------------------------------------------------------ stream errors


async def test_stream_yields_each_line_as_it_arrives(server: FakeServer) -> None:
    server.expect(
        "POST",
        "/api/chat",
        FakeResponse.ndjson(
            [
                chunk(MODEL, content="one "),
                Pause(0.3),
                chunk(MODEL, content="two"),
                final(MODEL),
            ]
        ),
    )
    provider = make(server)
    stream = provider.stream(request())
    opened = await anext(stream)
    assert isinstance(opened, MetadataEvent) and opened.headers is not None
    seen = [await anext(stream), await anext(stream)]
    assert seen == [MetadataEvent(model=MODEL), TextDelta(text="one ")]
    rest = [event async for event in stream]
    await provider.aclose()
    assert TextDelta(text="two") in rest


async def test_error_line_inside_a_200_stream(server: FakeServer) -> None:
    server.expect(
        "POST",
        "/api/chat",
        FakeResponse.ndjson(
            [
                chunk(MODEL, content="Hello"),
                {"error": "llama runner process has terminated: signal: killed"},
            ]
        ),
    )
    events: list[StreamEvent] = []
    provider = make(server)
    with pytest.raises(errors.ServerError, match="runner process has terminated") as info:
        async for event in provider.stream(request()):
            events.append(event)
    await provider.aclose()
    assert TextDelta(text="Hello") in events
    assert info.value.provider == "local" and info.value.model == MODEL
    assert info.value.retryable


async def test_context_error_inside_a_200_stream(server: FakeServer) -> None:
    server.expect(
        "POST",
        "/api/chat",
        FakeResponse.ndjson([{"error": "input length exceeds maximum context length"}]),
    )
    provider = make(server)
    with pytest.raises(errors.ContextWindowExceededError):
        await collect(provider, request())


async def test_stream_closed_cleanly_without_done_is_cut_off(server: FakeServer) -> None:
    server.expect(
        "POST",
        "/api/chat",
        FakeResponse.ndjson([chunk(MODEL, content="Hello"), chunk(MODEL, content=" there")]),
    )
    provider = make(server)
    with pytest.raises(errors.NetworkError, match="done") as info:
        await collect(provider, request())
    assert info.value.retryable and info.value.provider == "local"


@pytest.mark.parametrize("reset", [False, True], ids=["truncated", "reset"])
async def test_stream_cut_by_the_network(server: FakeServer, reset: bool) -> None:
    server.expect(
        "POST",
        "/api/chat",
        FakeResponse.ndjson([chunk(MODEL, content="Hel")], truncate=not reset, reset=reset),
    )
    provider = make(server)
    with pytest.raises(errors.NetworkError) as info:
        await collect(provider, request())
    assert info.value.retryable


async def test_garbage_line_mid_stream_is_malformed(server: FakeServer) -> None:
    server.expect(
        "POST",
        "/api/chat",
        FakeResponse(
            status=200,
            headers={"content-type": "application/x-ndjson"},
            pieces=[json.dumps(chunk(MODEL, content="Hi")) + "\n", "{not json\n"],
        ),
    )
    provider = make(server)
    with pytest.raises(errors.MalformedResponseError, match="NDJSON") as info:
        await collect(provider, request())
    assert not isinstance(info.value.__cause__, KeyError)


@pytest.mark.parametrize("line", [[1, 2], {"message": "text"}, {"message": {"content": 5}}])
async def test_wrong_shapes_in_stream_are_malformed(server: FakeServer, line: Any) -> None:
    server.expect("POST", "/api/chat", FakeResponse.ndjson([line, final(MODEL)]))
    with pytest.raises(errors.MalformedResponseError):
        await collect(make(server), request())


async def test_stream_http_error_before_the_body(server: FakeServer) -> None:
    server.expect(
        "POST",
        "/api/chat",
        FakeResponse.json_body(
            {"error": 'model "nope" not found, try pulling it first'}, status=404
        ),
    )
    provider = make(server)
    with pytest.raises(errors.ModelNotFoundError, match="ollama pull nope") as info:
        await collect(provider, request(model="nope"))
    assert info.value.status == 404


# ------------------------------------------------------------------ timeouts


async def test_first_token_timeout(server: FakeServer) -> None:
    server.expect("POST", "/api/chat", FakeResponse.ndjson([Pause(1.0), final(MODEL)]))
    provider = make(server, first_token_timeout=0.2)
    with pytest.raises(errors.TimeoutError, match="first_token_timeout") as info:
        await collect(provider, request())
    assert info.value.retryable and info.value.provider == "local"


async def test_total_timeout_on_a_stream(server: FakeServer) -> None:
    server.expect(
        "POST",
        "/api/chat",
        FakeResponse.ndjson([chunk(MODEL, content="a"), Pause(1.0), final(MODEL)]),
    )
    provider = make(server, timeout=0.3, first_token_timeout=5)
    events: list[StreamEvent] = []
    with pytest.raises(errors.TimeoutError, match=r"timeout=0\.3"):
        async for event in provider.stream(request()):
            events.append(event)
    await provider.aclose()
    assert TextDelta(text="a") in events


async def test_total_timeout_on_chat(server: FakeServer) -> None:
    server.expect(
        "POST",
        "/api/chat",
        FakeResponse(
            status=200,
            headers={"content-type": "application/json"},
            pieces=[Pause(1.0), json.dumps(final(MODEL, content="late"))],
        ),
    )
    provider = make(server, timeout=0.2)
    with pytest.raises(errors.TimeoutError):
        await provider.chat(request())
    await provider.aclose()


def test_a_document_is_refused_naming_the_provider() -> None:
    from llmkernel.errors import InvalidRequestError
    from llmkernel.types import ChatRequest, FilePart, Message, TextPart
    from llmkernel_ollama.convert import chat_body
    from llmkernel_ollama.settings import OllamaSettings

    doc = FilePart(media_type="application/pdf", data="JVBERi0=")
    request = ChatRequest(
        model="llama3", messages=(Message(role="user", content=(TextPart(text="x"), doc)),)
    )
    with pytest.raises(InvalidRequestError, match="takes no documents"):
        chat_body(request, OllamaSettings(), stream=False, provider="ollama")
