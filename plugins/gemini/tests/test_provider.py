"""Gemini specifics: request shapes, parsing, usage, errors, embeddings, models."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import gemini_wire as wire
import httpx
import pytest

import llmkernel_gemini.plugin
from llmkernel import errors
from llmkernel.kernel import Kernel
from llmkernel.provider import ProviderConfig
from llmkernel.types import (
    ChatRequest,
    EmbeddingRequest,
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
from llmkernel_gemini.provider import GeminiProvider
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer, Gate, RecordedRequest

KEY_ENV = "LLMKERNEL_GEMINI_TEST_KEY"
CHAT = wire.path()
STREAM = wire.path(method="streamGenerateContent")
WEATHER = Tool(
    name="get_weather",
    description="Current weather for a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, wire.API_KEY)
    return wire.API_KEY


def make(server: FakeServer, **options: Any) -> GeminiProvider:
    config = {"base_url": server.url, "api_key_env": KEY_ENV, **options}
    return GeminiProvider(
        ProviderConfig(name="g", type="gemini", options=config, where="[providers.g] in test")
    )


@pytest.fixture
async def provider(server: FakeServer, key: str) -> AsyncIterator[GeminiProvider]:
    instance = make(server)
    yield instance
    await instance.aclose()


def ask(*messages: Message, **kwargs: Any) -> ChatRequest:
    return ChatRequest(model=wire.MODEL, messages=messages or (Message.user("hi"),), **kwargs)


def text_answer(text: str = "ok", **kwargs: Any) -> FakeResponse:
    return FakeResponse.json_body(wire.response([{"text": text}], **kwargs))


async def collect(provider: GeminiProvider, request: ChatRequest) -> list[StreamEvent]:
    """The stream's events after the first, which carries the response headers."""
    events = [event async for event in provider.stream(request)]
    assert isinstance(events[0], MetadataEvent) and events[0].headers is not None
    assert "content-type" in events[0].headers
    return events[1:]


# --------------------------------------------------------------------------- requests


async def test_request_shape(provider: GeminiProvider, server: FakeServer) -> None:
    server.expect("POST", CHAT, text_answer("fine"))
    request = ask(
        Message.system("Be brief."),
        Message.user("hi"),
        Message.assistant("hello"),
        Message.system("Answer in French."),
        Message.user("how are you?"),
        temperature=0.3,
        top_p=0.9,
        max_tokens=200,
        stop=("END", "STOP"),
    )
    response = await provider.chat(request)
    assert response.text == "fine"
    sent = server.requests[-1]
    assert sent.method == "POST"
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == wire.API_KEY
    assert sent.headers["content-type"] == "application/json"
    assert wire.API_KEY not in sent.target
    assert sent.json() == {
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Answer in French."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "model", "parts": [{"text": "hello"}]},
            {"role": "user", "parts": [{"text": "how are you?"}]},
        ],
        "generationConfig": {
            "temperature": 0.3,
            "topP": 0.9,
            "maxOutputTokens": 200,
            "stopSequences": ["END", "STOP"],
        },
    }


async def test_stream_request_uses_sse_and_the_same_body(
    provider: GeminiProvider, server: FakeServer
) -> None:
    server.expect("POST", STREAM, wire.stream_response(wire.response([{"text": "x"}])))
    await collect(provider, ask(max_tokens=5))
    sent = server.requests[-1]
    assert sent.path == STREAM
    assert sent.query == {"alt": ["sse"]}
    assert sent.headers["accept"] == "text/event-stream"
    assert sent.headers["x-goog-api-key"] == wire.API_KEY
    assert sent.json()["generationConfig"] == {"maxOutputTokens": 5}


async def test_api_version_and_model_prefix(server: FakeServer, key: str) -> None:
    provider = make(server, api_version="v1", base_url=server.url + "/")
    server.expect("POST", "/v1/models/gemini-2.0-flash:generateContent", text_answer())
    server.expect("POST", "/v1/tunedModels/my-tune:generateContent", text_answer())
    await provider.chat(ChatRequest(model="models/gemini-2.0-flash", messages=(Message.user("a"),)))
    await provider.chat(ChatRequest(model="tunedModels/my-tune", messages=(Message.user("a"),)))
    assert [r.path for r in server.requests] == [
        "/v1/models/gemini-2.0-flash:generateContent",
        "/v1/tunedModels/my-tune:generateContent",
    ]
    with pytest.raises(errors.InvalidRequestError, match="model name"):
        await provider.chat(ChatRequest(model="x?key=1", messages=(Message.user("a"),)))
    await provider.aclose()


async def test_options_pass_through(provider: GeminiProvider, server: FakeServer) -> None:
    server.expect("POST", CHAT, text_answer())
    safety = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
    await provider.chat(
        ask(temperature=0.1, options={"safetySettings": safety, "generationConfig": {"topK": 3}})
    )
    body = server.requests[-1].json()
    assert body["safetySettings"] == safety
    assert body["generationConfig"] == {"temperature": 0.1, "topK": 3}


async def test_images(provider: GeminiProvider, server: FakeServer) -> None:
    server.expect("POST", CHAT, text_answer("a cat"))
    message = Message(
        role="user",
        content=(
            TextPart(text="What is this?"),
            ImagePart(data="iVBORw0KGgo=", media_type="image/png"),
            ImagePart(url="https://example.com/cat.JPG?size=large"),
            ImagePart(url="https://example.com/render", media_type="image/webp"),
            ImagePart(url="gs://bucket/photo.webp"),
        ),
    )
    await provider.chat(ask(message))
    assert server.requests[-1].json()["contents"][0]["parts"] == [
        {"text": "What is this?"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {
            "fileData": {
                "mimeType": "image/jpeg",
                "fileUri": "https://example.com/cat.JPG?size=large",
            }
        },
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/render"}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "gs://bucket/photo.webp"}},
    ]
    unknown = Message(role="user", content=(ImagePart(url="https://example.com/pic"),))
    with pytest.raises(errors.InvalidRequestError, match="media_type"):
        await provider.chat(ask(unknown))


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (ToolChoice(mode="auto"), {"mode": "AUTO"}),
        (ToolChoice(mode="none"), {"mode": "NONE"}),
        (ToolChoice(mode="required"), {"mode": "ANY"}),
        (
            ToolChoice(mode="tool", name="get_weather"),
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
async def test_tool_specs_and_choice(
    provider: GeminiProvider, server: FakeServer, choice: ToolChoice, expected: dict[str, Any]
) -> None:
    server.expect("POST", CHAT, text_answer())
    await provider.chat(ask(tools=(WEATHER, Tool(name="now")), tool_choice=choice))
    body = server.requests[-1].json()
    assert body["toolConfig"] == {"functionCallingConfig": expected}
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather for a city.",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                },
                {"name": "now"},
            ]
        }
    ]


async def test_tool_results_grouped_in_one_user_turn(
    provider: GeminiProvider, server: FakeServer
) -> None:
    server.expect("POST", CHAT, text_answer("done"))
    calls = (
        ToolCall(id="call_0", name="get_weather", arguments={"city": "Paris"}, signature="sig-A"),
        ToolCall(id="call_1", name="get_weather", arguments={"city": "Tokyo"}),
    )
    await provider.chat(
        ask(
            Message.user("weather?"),
            Message(role="assistant", tool_calls=calls),
            Message.tool_result("call_0", '{"temp": 18, "sky": "sunny"}'),
            Message.tool_result("call_1", "rain"),
            Message.tool_result("other", "3pm", name="now"),
            Message.user("and tomorrow?"),
            tools=(WEATHER,),
        )
    )
    contents = server.requests[-1].json()["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [
            {
                "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                "thoughtSignature": "sig-A",
            },
            {"functionCall": {"name": "get_weather", "args": {"city": "Tokyo"}}},
        ],
    }
    assert contents[2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"temp": 18, "sky": "sunny"}}},
            {"functionResponse": {"name": "get_weather", "response": {"result": "rain"}}},
            {"functionResponse": {"name": "now", "response": {"result": "3pm"}}},
        ],
    }
    assert contents[3] == {"role": "user", "parts": [{"text": "and tomorrow?"}]}


async def test_tool_result_without_a_known_call_is_refused(provider: GeminiProvider) -> None:
    with pytest.raises(errors.InvalidRequestError, match="call_9"):
        await provider.chat(ask(Message.user("x"), Message.tool_result("call_9", "42")))


# --------------------------------------------------------------------------- structured output


async def test_json_schema_openapi_style(provider: GeminiProvider, server: FakeServer) -> None:
    server.expect("POST", CHAT, text_answer('{"name": "Ada", "tags": ["x"]}'))
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "nick": {"type": ["string", "null"]},
            "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}},
            "kind": {"const": "person"},
        },
        "required": ["name"],
        "additionalProperties": False,
        "$defs": {"tag": {"type": "string", "maxLength": 10}},
    }
    response = await provider.chat(
        ask(response_format=ResponseFormat(type="json_schema", schema=schema, name="person"))
    )
    assert response.parsed == {"name": "Ada", "tags": ["x"]}
    config = server.requests[-1].json()["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseSchema"] == {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "nick": {"type": "string", "nullable": True},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}},
            "kind": {"enum": ["person"]},
        },
        "required": ["name"],
    }


async def test_json_schema_style_sends_schemas_unchanged(server: FakeServer, key: str) -> None:
    provider = make(server, schema_format="json_schema")
    server.expect("POST", CHAT, text_answer('{"a": 1}'))
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "additionalProperties": False,
    }
    response = await provider.chat(
        ask(tools=(WEATHER,), response_format=ResponseFormat(type="json_schema", schema=schema))
    )
    body = server.requests[-1].json()
    assert body["generationConfig"]["responseJsonSchema"] == schema
    assert "responseSchema" not in body["generationConfig"]
    declaration = body["tools"][0]["functionDeclarations"][0]
    assert declaration["parametersJsonSchema"] == dict(WEATHER.parameters)
    assert "parameters" not in declaration
    assert response.parsed == {"a": 1}
    await provider.aclose()


async def test_json_object(provider: GeminiProvider, server: FakeServer) -> None:
    server.expect("POST", CHAT, text_answer("[1, 2]"))
    response = await provider.chat(ask(response_format=ResponseFormat(type="json_object")))
    assert response.parsed == [1, 2]
    assert server.requests[-1].json()["generationConfig"] == {
        "responseMimeType": "application/json"
    }


# --------------------------------------------------------------------------- reasoning


@pytest.mark.parametrize(
    ("reasoning", "config"),
    [
        (Reasoning(effort="low"), {"thinkingBudget": 1024, "includeThoughts": True}),
        (Reasoning(effort="medium"), {"thinkingBudget": 8192, "includeThoughts": True}),
        (Reasoning(effort="high"), {"thinkingBudget": 24576, "includeThoughts": True}),
        (
            Reasoning(budget_tokens=3000, effort="high"),
            {"thinkingBudget": 3000, "includeThoughts": True},
        ),
        (Reasoning(budget_tokens=0), {"thinkingBudget": 0}),
    ],
)
async def test_thinking_config(
    provider: GeminiProvider, server: FakeServer, reasoning: Reasoning, config: dict[str, Any]
) -> None:
    server.expect("POST", CHAT, text_answer())
    await provider.chat(ask(reasoning=reasoning))
    assert server.requests[-1].json()["generationConfig"]["thinkingConfig"] == config


async def test_thoughts_and_signatures_round_trip(
    provider: GeminiProvider, server: FakeServer
) -> None:
    usage = {
        "promptTokenCount": 10,
        "candidatesTokenCount": 5,
        "thoughtsTokenCount": 40,
        "totalTokenCount": 55,
    }
    server.expect(
        "POST",
        CHAT,
        FakeResponse.json_body(
            wire.response(
                [
                    {
                        "text": "Let me think about Paris.",
                        "thought": True,
                        "thoughtSignature": "sig-th",
                    },
                    {"text": "Checking.", "thoughtSignature": "sig-text"},
                    wire.call_part("get_weather", {"city": "Paris"}, signature="sig-call"),
                ],
                usage=usage,
            )
        ),
        text_answer("It is sunny."),
    )
    first = await provider.chat(ask(reasoning=Reasoning(effort="low"), tools=(WEATHER,)))
    assert first.reasoning == "Let me think about Paris."
    assert first.text == "Checking."
    assert first.finish_reason == "tool_calls"
    assert first.tool_calls == (
        ToolCall(
            id="call_0", name="get_weather", arguments={"city": "Paris"}, signature="sig-call"
        ),
    )
    assert first.usage == Usage(input_tokens=10, output_tokens=45, reasoning_tokens=40)
    assert first.message.content == (
        ReasoningPart(text="Let me think about Paris.", signature="sig-th"),
        ReasoningPart(signature="sig-text"),
        TextPart(text="Checking."),
    )

    await provider.chat(
        ask(
            Message.user("weather?"),
            first.message,
            Message.tool_result("call_0", "sunny"),
            tools=(WEATHER,),
        )
    )
    contents = server.requests[-1].json()["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [
            {"text": "Let me think about Paris.", "thought": True, "thoughtSignature": "sig-th"},
            {"text": "Checking.", "thoughtSignature": "sig-text"},
            {
                "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                "thoughtSignature": "sig-call",
            },
        ],
    }
    assert contents[2]["parts"][0]["functionResponse"]["name"] == "get_weather"


async def test_streamed_thoughts(provider: GeminiProvider, server: FakeServer) -> None:
    server.expect(
        "POST",
        STREAM,
        wire.stream_response(
            wire.response([{"text": "Thinking", "thought": True}], finish=None),
            wire.response([{"text": " harder", "thought": True}], finish=None),
            wire.response([{"text": "Answer"}], finish=None),
            wire.response(
                [{"text": "", "thoughtSignature": "sig-end"}],
                usage={"promptTokenCount": 8, "candidatesTokenCount": 2, "thoughtsTokenCount": 30},
            ),
        ),
    )
    events = await collect(provider, ask(reasoning=Reasoning(effort="high")))
    reasoning = [e for e in events if isinstance(e, ReasoningDelta)]
    assert [(e.text, e.index) for e in reasoning[:2]] == [("Thinking", 0), (" harder", 0)]
    assert reasoning[2].signature == "sig-end" and reasoning[2].index == 1
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Answer"]
    assert events[-2] == UsageEvent(
        usage=Usage(input_tokens=8, output_tokens=32, reasoning_tokens=30)
    )


# --------------------------------------------------------------------------- usage and finish


async def test_usage_buckets(provider: GeminiProvider, server: FakeServer) -> None:
    usage = {
        "promptTokenCount": 1000,
        "cachedContentTokenCount": 600,
        "candidatesTokenCount": 50,
        "thoughtsTokenCount": 200,
        "toolUsePromptTokenCount": 30,
        "totalTokenCount": 1280,
    }
    server.expect("POST", CHAT, text_answer("x", usage=usage))
    response = await provider.chat(ask())
    assert response.usage == Usage(
        input_tokens=1030, output_tokens=250, cached_input_tokens=600, reasoning_tokens=200
    )
    assert response.usage.total_tokens == 1280
    assert response.usage.uncached_input_tokens == 430
    assert response.id == "resp-abc123"
    assert response.model == wire.MODEL


async def test_stream_usage_is_cumulative_take_the_last(
    provider: GeminiProvider, server: FakeServer
) -> None:
    server.expect(
        "POST",
        STREAM,
        wire.stream_response(
            wire.response(
                [{"text": "a"}],
                finish=None,
                usage={"promptTokenCount": 9, "candidatesTokenCount": 1},
            ),
            wire.response(
                [{"text": "b"}],
                finish=None,
                usage={"promptTokenCount": 9, "candidatesTokenCount": 2},
            ),
            wire.response(
                [{"text": "c"}],
                usage={
                    "promptTokenCount": 9,
                    "cachedContentTokenCount": 4,
                    "candidatesTokenCount": 3,
                },
            ),
        ),
    )
    events = await collect(provider, ask())
    assert events[0] == MetadataEvent(id="resp-abc123", model=wire.MODEL)
    assert [type(e) for e in events].count(UsageEvent) == 1
    assert events[-2:] == [
        UsageEvent(usage=Usage(input_tokens=9, output_tokens=3, cached_input_tokens=4)),
        FinishEvent(finish_reason="stop"),
    ]


@pytest.mark.parametrize(
    ("raw", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("OTHER", "stop"),
    ],
)
async def test_finish_reasons(
    provider: GeminiProvider, server: FakeServer, raw: str, finish: str
) -> None:
    server.expect("POST", CHAT, text_answer("partial", finish=raw))
    response = await provider.chat(ask())
    assert response.finish_reason == finish
    assert (response.refusal is not None) == (finish == "content_filter")
    if response.refusal:
        assert raw in response.refusal


async def test_safety_stop_in_a_stream_is_a_refusal(
    provider: GeminiProvider, server: FakeServer
) -> None:
    server.expect(
        "POST",
        STREAM,
        wire.stream_response(
            wire.response([{"text": "I was saying"}], finish=None),
            wire.response(None, finish="SAFETY", finishMessage="unsafe content"),
        ),
    )
    events = await collect(provider, ask())
    refusals = [e.refusal for e in events if isinstance(e, MetadataEvent) and e.refusal]
    assert refusals == ["Gemini stopped the answer (SAFETY): unsafe content"]
    assert events[-1] == FinishEvent(finish_reason="content_filter")


async def test_stream_with_a_signed_tool_call(provider: GeminiProvider, server: FakeServer) -> None:
    server.expect(
        "POST",
        STREAM,
        wire.stream_response(
            wire.response(
                [
                    wire.call_part(
                        "get_weather", {"city": "Paris", "days": [1, 2]}, signature="sig-x"
                    )
                ],
                finish=None,
            ),
            wire.response(
                [{"functionCall": {"id": "fc-7", "name": "now", "args": {}}}], finish="STOP"
            ),
        ),
    )
    events = await collect(provider, ask(tools=(WEATHER,)))
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert calls == [
        ToolCallDelta(
            index=0,
            id="call_0",
            name="get_weather",
            arguments='{"city": "Paris", "days": [1, 2]}',
            signature="sig-x",
        ),
        ToolCallDelta(index=1, id="fc-7", name="now", arguments="{}"),
    ]
    assert events[-1] == FinishEvent(finish_reason="tool_calls")


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
async def test_malformed_function_call_is_a_retryable_error(
    provider: GeminiProvider, server: FakeServer, stream: bool
) -> None:
    body = wire.response(
        None,
        finish="MALFORMED_FUNCTION_CALL",
        finishMessage="Malformed function call: get_weather(city=",
    )
    server.expect("POST", CHAT, FakeResponse.json_body(body))
    server.expect("POST", STREAM, wire.stream_response(body))
    with pytest.raises(errors.MalformedResponseError, match="get_weather") as info:
        if stream:
            await collect(provider, ask())
        else:
            await provider.chat(ask())
    assert info.value.retryable
    assert info.value.code == "MALFORMED_FUNCTION_CALL"


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
async def test_blocked_prompt_is_content_filtered(
    provider: GeminiProvider, server: FakeServer, stream: bool
) -> None:
    body = {
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
        "modelVersion": wire.MODEL,
    }
    server.expect("POST", CHAT, FakeResponse.json_body(body))
    server.expect("POST", STREAM, wire.stream_response(body))
    with pytest.raises(errors.ContentFilteredError, match="PROHIBITED_CONTENT") as info:
        if stream:
            await collect(provider, ask())
        else:
            await provider.chat(ask())
    assert info.value.provider == "g"
    assert not info.value.fallback


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (
            401,
            wire.error_body(
                401, "UNAUTHENTICATED", "Request had invalid authentication credentials."
            ),
            errors.AuthenticationError,
        ),
        (408, wire.error_body(408, "DEADLINE_EXCEEDED", "Request timed out."), errors.TimeoutError),
        (409, wire.error_body(409, "ABORTED", "Conflict."), errors.ServerError),
        (
            413,
            wire.error_body(
                413, "INVALID_ARGUMENT", "Request payload size exceeds the limit: 20971520 bytes."
            ),
            errors.InvalidRequestError,
        ),
        (
            422,
            wire.error_body(422, "INVALID_ARGUMENT", "Unprocessable."),
            errors.InvalidRequestError,
        ),
        (502, wire.error_body(502, "UNKNOWN", "Bad gateway"), errors.ServerError),
        (
            504,
            wire.error_body(
                504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."
            ),
            errors.TimeoutError,
        ),
        (500, wire.error_body(500, "INTERNAL", "The model is overloaded."), errors.OverloadedError),
        (
            400,
            wire.error_body(400, "INVALID_ARGUMENT", "API key expired. Please renew the API key."),
            errors.AuthenticationError,
        ),
        (
            400,
            wire.error_body(
                400, "FAILED_PRECONDITION", "User location is not supported for the API use."
            ),
            errors.InvalidRequestError,
        ),
    ],
)
async def test_error_statuses(
    provider: GeminiProvider,
    server: FakeServer,
    status: int,
    body: dict[str, Any],
    kind: type[errors.ProviderError],
) -> None:
    server.expect(
        "POST",
        CHAT,
        FakeResponse.json_body(body, status=status, headers={"x-goog-request-id": "req-42"}),
    )
    with pytest.raises(errors.ProviderError) as info:
        await provider.chat(ask())
    assert type(info.value) is kind
    assert info.value.status == status
    assert info.value.request_id == "req-42"
    assert info.value.provider == "g" and info.value.model == wire.MODEL
    assert body["error"]["message"] in str(info.value)


async def test_error_body_in_a_list(provider: GeminiProvider, server: FakeServer) -> None:
    status, body = wire.ERRORS["not_found"]
    server.expect("POST", CHAT, FakeResponse.json_body([body], status=status))
    with pytest.raises(errors.ModelNotFoundError, match="ListModels"):
        await provider.chat(ask())


async def test_rate_limit_retry_delay(provider: GeminiProvider, server: FakeServer) -> None:
    server.expect("POST", CHAT, wire.error_response("rate_limit"))
    with pytest.raises(errors.RateLimitError) as info:
        await provider.chat(ask())
    assert info.value.retry_after == 17.0
    assert info.value.retryable


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "in 120 s"}, 120.0),
    ],
)
async def test_retry_after_headers(
    provider: GeminiProvider, server: FakeServer, headers: dict[str, str], expected: float
) -> None:
    if headers.get("retry-after") == "in 120 s":  # an HTTP date, made now
        headers = {"retry-after": email.utils.formatdate(time.time() + 120, usegmt=True)}
    body = wire.error_body(429, "RESOURCE_EXHAUSTED", wire.QUOTA_MESSAGE)
    server.expect("POST", CHAT, FakeResponse.json_body(body, status=429, headers=headers))
    with pytest.raises(errors.RateLimitError) as info:
        await provider.chat(ask())
    assert info.value.retry_after == pytest.approx(expected, abs=2.0)


@pytest.mark.parametrize(
    ("details", "message", "kind"),
    [
        (
            (wire.quota_failure("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"),),
            wire.QUOTA_MESSAGE,
            errors.RateLimitError,
        ),
        (
            (wire.quota_failure("GenerateContentInputTokensPerModelPerDay-FreeTier"),),
            wire.QUOTA_MESSAGE,
            errors.QuotaExceededError,
        ),
        (
            (),
            wire.QUOTA_MESSAGE + "\n* Quota exceeded for metric: generativelanguage.googleapis.com/"
            "generate_content_free_tier_requests, limit: 0, model: gemini-2.5-pro",
            errors.QuotaExceededError,
        ),
        (
            (
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {"subject": "project:1", "description": "Billing account disabled"}
                    ],
                },
            ),
            "Resource has been exhausted (e.g. check quota).",
            errors.QuotaExceededError,
        ),
        ((), "Resource has been exhausted (e.g. check quota).", errors.RateLimitError),
    ],
)
async def test_quota_rule(
    provider: GeminiProvider,
    server: FakeServer,
    details: tuple[dict[str, Any], ...],
    message: str,
    kind: type[errors.ProviderError],
) -> None:
    body = wire.error_body(429, "RESOURCE_EXHAUSTED", message, *details)
    server.expect("POST", CHAT, FakeResponse.json_body(body, status=429))
    with pytest.raises(errors.ProviderError) as info:
        await provider.chat(ask())
    assert type(info.value) is kind


async def test_error_body_that_is_not_json(provider: GeminiProvider, server: FakeServer) -> None:
    server.expect(
        "POST",
        CHAT,
        FakeResponse.text_body(
            "<html><body>502 Bad Gateway</body></html>", status=502, content_type="text/html"
        ),
    )
    with pytest.raises(errors.ServerError, match="502 Bad Gateway") as info:
        await provider.chat(ask())
    assert info.value.status == 502


@pytest.mark.parametrize(
    ("chunk", "kind", "status"),
    [
        (
            wire.error_body(500, "INTERNAL", "An internal error has occurred."),
            errors.ServerError,
            500,
        ),
        (
            wire.error_body(503, "UNAVAILABLE", "The model is overloaded."),
            errors.OverloadedError,
            503,
        ),
        (
            {
                "error": {
                    "message": "quota",
                    "status": "RESOURCE_EXHAUSTED",
                    "details": [wire.retry_info("2s")],
                }
            },
            errors.RateLimitError,
            429,
        ),
    ],
)
async def test_error_inside_a_200_stream(
    provider: GeminiProvider,
    server: FakeServer,
    chunk: dict[str, Any],
    kind: type[errors.ProviderError],
    status: int,
) -> None:
    server.expect(
        "POST", STREAM, wire.stream_response(wire.response([{"text": "Hel"}], finish=None), chunk)
    )
    events: list[StreamEvent] = []
    with pytest.raises(errors.ProviderError) as info:
        async for event in provider.stream(ask()):
            events.append(event)
    assert type(info.value) is kind
    assert status >= 400  # the kind the RPC error stands for...
    assert info.value.status == 200  # ...while the error keeps the HTTP status
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hel"]


async def test_stream_that_ends_without_a_finish_reason(
    provider: GeminiProvider, server: FakeServer
) -> None:
    server.expect(
        "POST", STREAM, wire.stream_response(wire.response([{"text": "Hello"}], finish=None))
    )
    with pytest.raises(errors.NetworkError, match="cut off") as info:
        await collect(provider, ask())
    assert info.value.retryable


@pytest.mark.parametrize("reset", [False, True], ids=["cut", "reset"])
async def test_stream_cut_mid_chunk(
    provider: GeminiProvider, server: FakeServer, reset: bool
) -> None:
    server.expect(
        "POST",
        STREAM,
        FakeResponse.sse(
            ['data: {"candidates": [{"content": {"parts": [{"te'], truncate=not reset, reset=reset
        ),
    )
    with pytest.raises(errors.NetworkError) as info:
        await collect(provider, ask())
    assert info.value.provider == "g"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"candidates": []}, "no candidates"),
        ({"candidates": "nope"}, "not a list"),
        ({"candidates": [{"content": {"parts": [7]}}]}, "parts[0]"),
        (
            {
                "candidates": [
                    {"content": {"parts": [{"functionCall": {"name": "f", "args": [1]}}]}}
                ]
            },
            "args",
        ),
        ({"candidates": [{"content": {"parts": [{"functionCall": {"args": {}}}]}}]}, "name"),
        ({"candidates": [{"content": {"parts": [{"text": 5}]}}]}, "text"),
        (wire.response([{"text": "x"}], usage={"promptTokenCount": -1}), "promptTokenCount"),
        (wire.response([{"text": "x"}], usage={"promptTokenCount": "12"}), "promptTokenCount"),
        ([1, 2], "not a JSON object"),
    ],
)
async def test_malformed_bodies(
    provider: GeminiProvider, server: FakeServer, body: Any, needle: str
) -> None:
    server.expect("POST", CHAT, FakeResponse.json_body(body))
    with pytest.raises(errors.MalformedResponseError, match="Gemini answered") as info:
        await provider.chat(ask())
    assert needle in str(info.value)
    assert info.value.provider == "g"


async def test_stream_body_that_is_not_an_event_stream(
    provider: GeminiProvider, server: FakeServer
) -> None:
    server.expect(
        "POST", STREAM, FakeResponse.text_body("<html>proxy</html>", content_type="text/html")
    )
    with pytest.raises(errors.MalformedResponseError, match="text/html"):
        await collect(provider, ask())


async def test_chat_timeout(server: FakeServer, key: str) -> None:
    provider = make(server, timeout=0.3)
    gate = Gate()
    server.expect(
        "POST",
        CHAT,
        FakeResponse(
            headers={"content-type": "application/json"}, pieces=['{"candidates": [', gate, "]}"]
        ),
    )
    started = time.monotonic()
    with pytest.raises(errors.TimeoutError, match=r"timeout=0\.3s") as info:
        await provider.chat(ask())
    assert time.monotonic() - started < 3
    assert info.value.retryable and info.value.provider == "g"
    gate.open()
    await provider.aclose()


async def test_stream_total_timeout(server: FakeServer, key: str) -> None:
    provider = make(server, timeout=0.3)
    gate = Gate()
    server.expect(
        "POST",
        STREAM,
        wire.stream_response(
            wire.response([{"text": "a"}], finish=None), gate, wire.response([{"text": "b"}])
        ),
    )
    started = time.monotonic()
    with pytest.raises(errors.TimeoutError, match=r"timeout=0\.3s"):
        await collect(provider, ask())
    assert time.monotonic() - started < 3
    gate.open()
    await provider.aclose()


async def test_first_token_timeout(server: FakeServer, key: str) -> None:
    provider = make(server, first_token_timeout=0.2)
    gate = Gate()
    server.expect("POST", STREAM, wire.stream_response(gate, wire.response([{"text": "late"}])))
    with pytest.raises(errors.TimeoutError, match="first_token_timeout"):
        await collect(provider, ask())
    gate.open()
    await provider.aclose()


# --------------------------------------------------------------------------- embeddings


async def test_single_embedding(provider: GeminiProvider, server: FakeServer) -> None:
    server.expect(
        "POST",
        wire.path("gemini-embedding-001", "embedContent"),
        FakeResponse.json_body({"embedding": {"values": [0.5, -1, 2]}}),
    )
    result = await provider.embed(
        EmbeddingRequest(
            model="gemini-embedding-001",
            inputs=("hello",),
            dimensions=3,
            options={"task_type": "RETRIEVAL_QUERY"},
        )
    )
    assert result.vectors == [[0.5, -1.0, 2.0]]
    assert result.usage == Usage()
    sent = server.requests[-1]
    assert sent.headers["x-goog-api-key"] == wire.API_KEY
    assert sent.json() == {
        "model": "models/gemini-embedding-001",
        "content": {"parts": [{"text": "hello"}]},
        "outputDimensionality": 3,
        "taskType": "RETRIEVAL_QUERY",
    }


async def test_embeddings_are_batched_by_100(provider: GeminiProvider, server: FakeServer) -> None:
    def handler(request: RecordedRequest) -> FakeResponse:
        items = request.json()["requests"]
        return FakeResponse.json_body(
            {"embeddings": [{"values": [float(i["content"]["parts"][0]["text"])]} for i in items]}
        )

    server.expect("POST", wire.path("text-embedding-004", "batchEmbedContents"), handler)
    texts = tuple(str(i) for i in range(250))
    result = await provider.embed(EmbeddingRequest(model="text-embedding-004", inputs=texts))
    assert result.vectors == [[float(i)] for i in range(250)]
    assert [len(r.json()["requests"]) for r in server.requests] == [100, 100, 50]
    assert result.model == "text-embedding-004"


async def test_embedding_count_mismatch(provider: GeminiProvider, server: FakeServer) -> None:
    server.expect(
        "POST",
        wire.path(method="batchEmbedContents"),
        FakeResponse.json_body({"embeddings": [{"values": [1.0]}]}),
    )
    with pytest.raises(errors.MalformedResponseError, match="1 embeddings for 2 texts"):
        await provider.embed(EmbeddingRequest(model=wire.MODEL, inputs=("a", "b")))


# --------------------------------------------------------------------------- models, health


async def test_list_models_strips_the_prefix(provider: GeminiProvider, server: FakeServer) -> None:
    pages = {
        "": {
            "models": [
                {
                    "name": "models/gemini-2.5-pro",
                    "inputTokenLimit": 1048576,
                    "supportedGenerationMethods": ["generateContent"],
                }
            ],
            "nextPageToken": "tok-2",
        },
        "tok-2": {
            "models": [
                {
                    "name": "models/embedding-gecko-001",
                    "inputTokenLimit": 1024,
                    "supportedGenerationMethods": ["embedText"],
                },
                {
                    "name": "models/new-embedder",
                    "inputTokenLimit": 2048,
                    "supportedGenerationMethods": ["embedContent"],
                },
            ]
        },
    }
    server.expect(
        "GET",
        "/v1beta/models",
        lambda r: FakeResponse.json_body(pages[r.query.get("pageToken", [""])[0]]),
    )
    models = await provider.list_models()
    assert [m.id for m in models] == ["gemini-2.5-pro", "embedding-gecko-001", "new-embedder"]
    assert all(m.provider == "g" for m in models)
    assert models[0].capabilities == provider.capabilities("gemini-2.5-pro")
    assert models[2].capabilities is not None and models[2].capabilities.embeddings
    assert [r.query.get("pageToken") for r in server.requests] == [None, ["tok-2"]]
    assert all(r.headers["x-goog-api-key"] == wire.API_KEY for r in server.requests)


async def test_health(provider: GeminiProvider, server: FakeServer) -> None:
    server.expect(
        "GET",
        "/v1beta/models",
        FakeResponse.json_body(wire.models_page(["gemini-2.5-flash"], "more")),
        wire.error_response("authentication"),
    )
    healthy = await provider.health()
    assert healthy.ok
    assert server.requests[-1].query["pageSize"] == ["1"]
    broken = await provider.health()
    assert not broken.ok
    assert "API key not valid" in broken.detail
    assert wire.API_KEY not in broken.detail


async def test_health_without_a_server(key: str) -> None:
    fake = FakeServer()
    provider = make(fake)
    fake.close()
    health = await provider.health()
    assert not health.ok
    assert "NetworkError" in health.detail
    await provider.aclose()


def test_capabilities_and_declared_models(server: FakeServer) -> None:
    provider = make(server, models=["gemini-exp-1206", "gemini-2.5-pro"])
    pro = provider.capabilities("gemini-2.5-pro")
    assert pro is not None and pro.reasoning and pro.tools and pro.images and pro.json_schema
    assert pro.context_window == 1_048_576
    flash = provider.capabilities("models/gemini-2.0-flash-001")
    assert flash is not None and flash.context_window == 1_048_576 and not flash.reasoning
    lite = provider.capabilities("gemini-2.5-flash-lite-preview-06-17")
    assert lite is not None and lite.reasoning
    embed = provider.capabilities("text-embedding-004")
    assert embed is not None and embed.embeddings and not embed.tools
    assert provider.capabilities("gpt-4o") is None
    declared = provider.declared_models()
    assert declared[:2] == ["gemini-exp-1206", "gemini-2.5-pro"]
    assert declared.count("gemini-2.5-pro") == 1
    assert {
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
        "gemini-2.0-flash",
        "text-embedding-004",
        "gemini-embedding-001",
    } <= set(declared)


# --------------------------------------------------------------------------- config, client


def test_settings_defaults_and_validation(server: FakeServer) -> None:
    provider = GeminiProvider(ProviderConfig(name="g", type="gemini"))
    assert provider.settings.base_url == "https://generativelanguage.googleapis.com"
    assert provider.settings.api_key_env == "GEMINI_API_KEY"
    assert provider.settings.api_root == "https://generativelanguage.googleapis.com/v1beta"
    for bad in (
        {"embedding_batch_size": 101},
        {"schema_format": "yaml"},
        {"api_versoin": "v1"},
        {"api_version": "v1/x"},
    ):
        with pytest.raises(errors.ConfigError):
            make(server, **bad)


async def test_missing_key_names_the_variable(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(errors.AuthenticationError, match=KEY_ENV):
        await make(server).chat(ask())
    assert server.requests == []


async def test_one_pooled_client(provider: GeminiProvider, server: FakeServer) -> None:
    server.expect("POST", CHAT, text_answer())
    await provider.chat(ask())
    client = provider._client
    await provider.chat(ask())
    assert provider._client is client and client is not None
    assert wire.API_KEY not in repr(provider)
    await provider.aclose()
    assert client.is_closed


async def test_custom_transport_is_used(key: str) -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=wire.response([{"text": "via transport"}]))

    provider = GeminiProvider(
        ProviderConfig(
            name="g",
            type="gemini",
            options={"api_key_env": KEY_ENV},
            transport=httpx.MockTransport(handle),
        )
    )
    response = await provider.chat(ask())
    assert response.text == "via transport"
    assert str(seen[0].url) == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    )
    await provider.aclose()


async def test_through_the_kernel(server: FakeServer, key: str) -> None:
    config = {
        "providers": {"gem": {"type": "gemini", "base_url": server.url, "api_key_env": KEY_ENV}},
        "retry": {"attempts": 1},
    }
    server.expect("POST", wire.path("gemini-2.5-pro"), text_answer('{"ok": true}'))
    async with Kernel.from_config(
        config, plugins=[llmkernel_gemini.plugin], entry_points=False
    ) as kernel:
        assert isinstance(kernel.provider("gem"), GeminiProvider)
        response = await kernel.achat(
            model="gem/gemini-2.5-pro", messages="hi", response_format={"type": "json_object"}
        )
    assert response.parsed == {"ok": True}
    assert response.provider == "gem"
    assert (
        llmkernel_gemini.plugin.provide_chat(config=ProviderConfig(name="x", type="openai")) is None
    )


async def test_yields_before_the_body_ends(provider: GeminiProvider, server: FakeServer) -> None:
    gate = Gate()
    server.expect(
        "POST",
        STREAM,
        wire.stream_response(
            wire.response([{"text": "early"}], finish=None), gate, wire.response([{"text": "!"}])
        ),
    )
    stream = provider.stream(ask())
    opened = await asyncio.wait_for(anext(stream), 5)
    assert isinstance(opened, MetadataEvent) and opened.headers is not None
    first = await asyncio.wait_for(anext(stream), 5)
    assert first == MetadataEvent(id="resp-abc123", model=wire.MODEL)
    assert await asyncio.wait_for(anext(stream), 5) == TextDelta(text="early")
    gate.open()
    rest = [event async for event in stream]
    assert rest[0] == TextDelta(text="!")


async def test_streamed_answer_goes_back_whole_through_the_kernel(
    server: FakeServer, key: str
) -> None:
    config = {
        "providers": {"gem": {"type": "gemini", "base_url": server.url, "api_key_env": KEY_ENV}},
        "retry": {"attempts": 1},
    }
    server.expect(
        "POST",
        STREAM,
        wire.stream_response(
            wire.response([{"text": "Plan: call it.", "thought": True}], finish=None),
            wire.response([{"text": "Calling."}], finish=None),
            wire.response(
                [wire.call_part("get_weather", {"city": "Oslo"}, signature="sig-c")],
                usage={"promptTokenCount": 11, "candidatesTokenCount": 6, "thoughtsTokenCount": 9},
            ),
        ),
    )
    server.expect("POST", CHAT, text_answer("Cold."))
    async with Kernel.from_config(
        config, plugins=[llmkernel_gemini.plugin], entry_points=False
    ) as kernel:
        handle = kernel.astream(
            model=f"gem/{wire.MODEL}", messages="weather in Oslo?", tools=[WEATHER], reasoning="low"
        )
        first = await handle.collect()
        assert first.finish_reason == "tool_calls"
        assert first.usage == Usage(input_tokens=11, output_tokens=15, reasoning_tokens=9)
        assert first.tool_calls == (
            ToolCall(
                id="call_0", name="get_weather", arguments={"city": "Oslo"}, signature="sig-c"
            ),
        )
        await kernel.achat(
            model=f"gem/{wire.MODEL}",
            tools=[WEATHER],
            messages=[
                Message.user("weather in Oslo?"),
                first.message,
                Message.tool_result(first.tool_calls[0].id, "-3C"),
            ],
        )
    contents = server.requests[-1].json()["contents"]
    assert contents[1:] == [
        {
            "role": "model",
            "parts": [
                {"text": "Plan: call it.", "thought": True},
                {"text": "Calling."},
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
                    "thoughtSignature": "sig-c",
                },
            ],
        },
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "-3C"}}}],
        },
    ]
