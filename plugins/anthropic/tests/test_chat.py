"""Non-streaming chat against the fake server: what is sent, what comes back."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import pytest
from anthropic_wire import (
    API_KEY,
    MODEL,
    MSG_ID,
    REQUEST_ID,
    Route,
    error_response,
    make_provider,
    message_response,
)

from llmkernel import errors
from llmkernel.types import (
    ChatRequest,
    ImagePart,
    Message,
    Reasoning,
    ReasoningPart,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    Usage,
)
from llmkernel_anthropic.provider import AnthropicProvider
from llmkernel_http.testing.fake_server import FakeResponse, Pause

WEATHER = Tool(
    name="get_weather",
    description="Current weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "celsius": {"type": "number"}},
    "required": ["city", "celsius"],
}


def request(*messages: Message, **kwargs: Any) -> ChatRequest:
    return ChatRequest(model=MODEL, messages=messages or (Message.user("hi"),), **kwargs)


def ok(text: str = "Hi!") -> FakeResponse:
    return message_response([{"type": "text", "text": text}])


# --------------------------------------------------------------------------- request


async def test_headers_and_body_shape(route: Route, api_key: str) -> None:
    provider = make_provider(
        route.base_url + "/v1/",
        api_version="2023-06-01",
        beta=["prompt-caching-2024-07-31", "output-128k-2025-02-19"],
        headers={"x-team": "search"},
        default_max_tokens=1234,
    )
    route.expect("POST", "/v1/messages", ok())
    response = await provider.chat(
        request(
            Message.system("Be brief."),
            Message.user("Hello"),
            Message.user("Again"),
            Message.system("Answer in French."),
            temperature=0.3,
            top_p=0.9,
            stop=("END",),
            user="user-42",
            options={"top_k": 5, "service_tier": "standard_only", "stream": True},
        )
    )
    await provider.aclose()
    assert response.text == "Hi!"
    sent = route.requests[-1]
    assert sent.method == "POST" and sent.path == route.prefix + "/v1/messages"
    assert sent.headers["x-api-key"] == API_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["anthropic-beta"] == "prompt-caching-2024-07-31,output-128k-2025-02-19"
    assert sent.headers["x-team"] == "search"
    assert sent.headers["content-type"] == "application/json"
    assert "authorization" not in sent.headers
    assert API_KEY not in sent.target
    assert sent.json() == {
        "model": MODEL,
        "max_tokens": 1234,
        "system": "Be brief.\n\nAnswer in French.",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "Again"}],
            }
        ],
        "temperature": 0.3,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "user-42"},
        "top_k": 5,
        "service_tier": "standard_only",
    }


async def test_request_max_tokens_wins_over_default(
    route: Route, provider: AnthropicProvider
) -> None:
    route.expect("POST", "/v1/messages", ok())
    await provider.chat(request(max_tokens=77))
    assert route.body()["max_tokens"] == 77
    assert "stream" not in route.body()


async def test_client_is_pooled_and_rebuilt_after_aclose(
    route: Route, provider: AnthropicProvider
) -> None:
    route.expect("POST", "/v1/messages", ok())
    await provider.chat(request())
    first = provider._client
    await provider.chat(request())
    assert provider._client is first
    await provider.aclose()
    assert first is not None and first.is_closed
    await provider.chat(request())
    assert provider._client is not None and provider._client is not first
    assert len(route.requests) == 3


async def test_images(route: Route, provider: AnthropicProvider) -> None:
    route.expect("POST", "/v1/messages", ok("A cat."))
    await provider.chat(
        request(
            Message(
                role="user",
                content=(
                    TextPart(text="What is this?"),
                    ImagePart(data="iVBORw0KGgo=", media_type="image/png"),
                    ImagePart(url="https://example.com/cat.jpg"),
                    ImagePart(url="data:image/jpeg;base64,/9j/4AAQ"),
                ),
            )
        )
    )
    assert route.body()["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"},
        },
    ]


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        (None, None),
        (ToolChoice(mode="auto"), {"type": "auto"}),
        (ToolChoice(mode="none"), {"type": "none"}),
        (ToolChoice(mode="required"), {"type": "any"}),
        (ToolChoice(mode="tool", name="get_weather"), {"type": "tool", "name": "get_weather"}),
    ],
)
async def test_tools_and_tool_choice(
    route: Route, provider: AnthropicProvider, choice: ToolChoice | None, wire: Any
) -> None:
    route.expect("POST", "/v1/messages", ok())
    bare = Tool(name="now")
    await provider.chat(request(tools=(WEATHER, bare), tool_choice=choice))
    body = route.body()
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "input_schema": dict(WEATHER.parameters),
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert body.get("tool_choice") == wire


async def test_tool_choice_without_tools_is_not_sent(
    route: Route, provider: AnthropicProvider
) -> None:
    route.expect("POST", "/v1/messages", ok())
    await provider.chat(request(tool_choice=ToolChoice(mode="required")))
    assert "tools" not in route.body() and "tool_choice" not in route.body()


async def test_parallel_tool_results_merge_into_one_user_message(
    route: Route, provider: AnthropicProvider
) -> None:
    route.expect("POST", "/v1/messages", ok("Paris 18C, Tokyo 25C."))
    calls = (
        ToolCall(id="toolu_1", name="get_weather", arguments={"city": "Paris"}),
        ToolCall(id="toolu_2", name="get_weather", arguments={"city": "Tokyo"}),
    )
    await provider.chat(
        request(
            Message.user("Weather in Paris and Tokyo?"),
            Message(role="assistant", content=(TextPart(text="Checking."),), tool_calls=calls),
            Message.tool_result("toolu_1", "18C"),
            Message(
                role="tool",
                tool_call_id="toolu_2",
                content=(
                    TextPart(text="25C, see map"),
                    ImagePart(url="https://example.com/map.png"),
                ),
            ),
            Message.user("Be short."),
            tools=(WEATHER,),
        )
    )
    assert route.body()["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Tokyo?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "get_weather",
                    "input": {"city": "Tokyo"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [
                        {"type": "text", "text": "25C, see map"},
                        {
                            "type": "image",
                            "source": {"type": "url", "url": "https://example.com/map.png"},
                        },
                    ],
                },
                {"type": "text", "text": "Be short."},
            ],
        },
    ]


# --------------------------------------------------------------------------- response


async def test_response_usage_is_normalized(route: Route, provider: AnthropicProvider) -> None:
    # Anthropic's input_tokens leaves out cache reads and writes
    route.expect(
        "POST",
        "/v1/messages",
        message_response(
            [{"type": "text", "text": "Cached answer"}],
            usage={
                "input_tokens": 21,
                "cache_creation_input_tokens": 188086,
                "cache_read_input_tokens": 4000,
                "output_tokens": 393,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": 188086,
                    "ephemeral_1h_input_tokens": 0,
                },
                "service_tier": "standard",
            },
        ),
    )
    response = await provider.chat(request())
    assert response.usage == Usage(
        input_tokens=21 + 188086 + 4000,
        output_tokens=393,
        cached_input_tokens=4000,
        cache_write_tokens=188086,
        reasoning_tokens=0,
    )
    assert response.usage.uncached_input_tokens == 21
    assert response.id == MSG_ID
    assert response.model == MODEL
    assert response.message.role == "assistant"
    assert response.message.content == (TextPart(text="Cached answer"),)
    assert response.parsed is None and response.refusal is None


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("pause_turn", "stop"),
        ("refusal", "content_filter"),
    ],
)
async def test_stop_reasons(
    route: Route, provider: AnthropicProvider, stop_reason: str, finish: str
) -> None:
    route.expect(
        "POST",
        "/v1/messages",
        message_response([{"type": "text", "text": "partial"}], stop_reason=stop_reason),
    )
    response = await provider.chat(request())
    assert response.finish_reason == finish


async def test_tool_use_response(route: Route, provider: AnthropicProvider) -> None:
    route.expect(
        "POST",
        "/v1/messages",
        message_response(
            [
                {"type": "text", "text": "I'll check."},
                {
                    "type": "tool_use",
                    "id": "toolu_01A09q90qw90lq917835lq9",
                    "name": "get_weather",
                    "input": {"city": "San Francisco, CA"},
                },
                {"type": "tool_use", "id": "toolu_01B", "name": "get_weather", "input": {}},
            ],
            stop_reason="tool_use",
        ),
    )
    response = await provider.chat(request(tools=(WEATHER,)))
    assert response.finish_reason == "tool_calls"
    assert response.text == "I'll check."
    assert response.tool_calls == (
        ToolCall(
            id="toolu_01A09q90qw90lq917835lq9",
            name="get_weather",
            arguments={"city": "San Francisco, CA"},
        ),
        ToolCall(id="toolu_01B", name="get_weather", arguments={}),
    )


async def test_refusal(route: Route, provider: AnthropicProvider) -> None:
    route.expect(
        "POST",
        "/v1/messages",
        message_response(
            [{"type": "text", "text": "Hello.."}],
            stop_reason="refusal",
            stop_details={
                "type": "refusal",
                "category": "cyber",
                "explanation": "This request was declined.",
            },
        ),
        message_response([], stop_reason="refusal"),
    )
    first = await provider.chat(request())
    assert first.finish_reason == "content_filter"
    assert first.refusal == "This request was declined."
    assert first.text == "Hello.."
    second = await provider.chat(request())
    assert second.refusal is not None and "refus" in second.refusal
    assert second.message.content == ()


# --------------------------------------------------------------------------- structured


async def test_structured_output_by_forced_tool(route: Route, provider: AnthropicProvider) -> None:
    route.expect(
        "POST",
        "/v1/messages",
        message_response(
            [
                {
                    "type": "tool_use",
                    "id": "toolu_9",
                    "name": "weather_report",
                    "input": {"city": "Paris", "celsius": 18.5},
                },
            ],
            stop_reason="tool_use",
        ),
    )
    fmt = ResponseFormat(type="json_schema", schema=SCHEMA, name="weather_report")
    response = await provider.chat(request(response_format=fmt))
    body = route.body()
    assert body["tools"] == [
        {
            "name": "weather_report",
            "description": "Give the final answer as this tool's input, in the required format.",
            "input_schema": SCHEMA,
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "weather_report"}
    assert response.parsed == {"city": "Paris", "celsius": 18.5}
    assert response.text == '{"city": "Paris", "celsius": 18.5}'
    assert response.finish_reason == "stop"
    assert response.tool_calls == ()


async def test_json_object_and_unsafe_format_names(
    route: Route, provider: AnthropicProvider
) -> None:
    route.expect(
        "POST",
        "/v1/messages",
        message_response(
            [
                {
                    "type": "tool_use",
                    "id": "toolu_9",
                    "name": "my_answer_v2",
                    "input": {"ok": True},
                },
            ],
            stop_reason="tool_use",
        ),
    )
    response = await provider.chat(
        request(response_format=ResponseFormat(type="json_object", name="my answer.v2"))
    )
    body = route.body()
    assert body["tools"][0]["name"] == "my_answer_v2"
    assert body["tools"][0]["input_schema"] == {"type": "object"}
    assert body["tool_choice"] == {"type": "tool", "name": "my_answer_v2"}
    assert response.parsed == {"ok": True}


async def test_structured_output_alongside_user_tools(
    route: Route, provider: AnthropicProvider
) -> None:
    route.expect(
        "POST",
        "/v1/messages",
        message_response(
            [
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
            ],
            stop_reason="tool_use",
        ),
    )
    fmt = ResponseFormat(type="json_schema", schema=SCHEMA, name="report")
    response = await provider.chat(request(tools=(WEATHER,), response_format=fmt))
    body = route.body()
    assert [t["name"] for t in body["tools"]] == ["get_weather", "report"]
    assert body["tool_choice"] == {"type": "any"}  # a real tool, or the answer
    assert response.finish_reason == "tool_calls"
    assert response.parsed is None
    assert [c.name for c in response.tool_calls] == ["get_weather"]


# --------------------------------------------------------------------------- reasoning


@pytest.mark.parametrize(
    ("reasoning", "thinking", "max_tokens"),
    [
        (Reasoning(effort="low"), {"type": "enabled", "budget_tokens": 1024}, 4096),
        (Reasoning(effort="medium"), {"type": "enabled", "budget_tokens": 4096}, 8192),
        (Reasoning(effort="high"), {"type": "enabled", "budget_tokens": 16384}, 16384 + 4096),
        (Reasoning(budget_tokens=2000), {"type": "enabled", "budget_tokens": 2000}, 4096),
        (Reasoning(budget_tokens=10), {"type": "enabled", "budget_tokens": 1024}, 4096),
        (Reasoning(budget_tokens=0), None, 4096),
    ],
)
async def test_reasoning_controls(
    route: Route, provider: AnthropicProvider, reasoning: Reasoning, thinking: Any, max_tokens: int
) -> None:
    route.expect("POST", "/v1/messages", ok())
    await provider.chat(request(reasoning=reasoning))
    assert route.body().get("thinking") == thinking
    assert route.body()["max_tokens"] == max_tokens


async def test_thinking_with_structured_output_cannot_force_the_tool(
    route: Route, provider: AnthropicProvider
) -> None:
    route.expect("POST", "/v1/messages", ok())
    await provider.chat(
        request(
            Message.system("Be exact."),
            Message.user("hi"),
            reasoning=Reasoning(budget_tokens=2048),
            max_tokens=8000,
            response_format=ResponseFormat(type="json_schema", schema=SCHEMA, name="report"),
        )
    )
    body = route.body()
    assert body["max_tokens"] == 8000
    assert body["tool_choice"] == {"type": "auto"}
    assert body["system"] == "Be exact.\n\nGive your final answer by calling the report tool."


async def test_thinking_round_trip_with_tools(route: Route, provider: AnthropicProvider) -> None:
    """Turn 1 thinks and calls a tool; turn 2 must send the thinking back, signed,
    before the tool_use, or Anthropic refuses the conversation."""
    route.expect(
        "POST",
        "/v1/messages",
        message_response(
            [
                {
                    "type": "thinking",
                    "thinking": "The user wants Paris weather.",
                    "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds",
                },
                {
                    "type": "redacted_thinking",
                    "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP",
                },
                {"type": "text", "text": "Let me look."},
                {
                    "type": "tool_use",
                    "id": "toolu_01",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
            stop_reason="tool_use",
            usage={"input_tokens": 400, "output_tokens": 120},
        ),
        ok("18C and sunny in Paris."),
    )
    first_request = request(
        Message.user("Weather in Paris?"), tools=(WEATHER,), reasoning=Reasoning(effort="medium")
    )
    first = await provider.chat(first_request)
    assert first.message.content == (
        ReasoningPart(
            text="The user wants Paris weather.",
            signature="EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds",
        ),
        ReasoningPart(redacted="EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"),
        TextPart(text="Let me look."),
    )
    assert first.reasoning == "The user wants Paris weather."
    assert first.usage.reasoning_tokens == 0  # Anthropic does not report it apart
    second = await provider.chat(
        request(
            Message.user("Weather in Paris?"),
            first.message,
            Message.tool_result("toolu_01", "18C and sunny"),
            tools=(WEATHER,),
            reasoning=Reasoning(effort="medium"),
        )
    )
    assert second.text == "18C and sunny in Paris."
    assert route.body()["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "thinking",
                    "thinking": "The user wants Paris weather.",
                    "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds",
                },
                {
                    "type": "redacted_thinking",
                    "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP",
                },
                {"type": "text", "text": "Let me look."},
                {
                    "type": "tool_use",
                    "id": "toolu_01",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C and sunny"}
            ],
        },
    ]


async def test_thinking_placed_first_and_unsigned_thinking_dropped(
    route: Route, provider: AnthropicProvider
) -> None:
    route.expect("POST", "/v1/messages", ok())
    await provider.chat(
        request(
            Message.user("q"),
            Message(
                role="assistant",
                content=(
                    TextPart(text="answer"),
                    ReasoningPart(text="from another provider, unsigned"),
                    ReasoningPart(text="signed", signature="sig"),
                ),
            ),
            Message.user("more"),
        )
    )
    assert route.body()["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "signed", "signature": "sig"},
        {"type": "text", "text": "answer"},
    ]


# --------------------------------------------------------------------------- errors


RESET = "Mon, 01 Jan 2024 00:00:00 GMT"


@pytest.mark.parametrize(
    ("status", "kind", "text", "expected"),
    [
        (400, "invalid_request_error", "max_tokens: Field required", errors.InvalidRequestError),
        (
            400,
            "invalid_request_error",
            "prompt is too long: 208372 tokens > 200000 maximum",
            errors.ContextWindowExceededError,
        ),
        (
            400,
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic "
            "API. Please go to Plans & Billing to upgrade or purchase credits.",
            errors.QuotaExceededError,
        ),
        (401, "authentication_error", "invalid x-api-key", errors.AuthenticationError),
        (402, "billing_error", "Payment required", errors.QuotaExceededError),
        (403, "permission_error", "no access to this model", errors.PermissionDeniedError),
        (404, "not_found_error", "model: claude-nope", errors.ModelNotFoundError),
        (408, "timeout_error", "Request timed out", errors.TimeoutError),
        (409, "conflict_error", "conflict", errors.ServerError),
        (
            413,
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
            errors.InvalidRequestError,
        ),
        (422, "invalid_request_error", "unprocessable", errors.InvalidRequestError),
        (
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
            errors.RateLimitError,
        ),
        (500, "api_error", "Internal server error", errors.ServerError),
        (502, "api_error", "Bad gateway", errors.ServerError),
        (503, "api_error", "Service unavailable", errors.OverloadedError),
        (529, "overloaded_error", "Overloaded", errors.OverloadedError),
    ],
)
async def test_error_statuses(
    route: Route,
    provider: AnthropicProvider,
    status: int,
    kind: str,
    text: str,
    expected: type[errors.ProviderError],
) -> None:
    route.expect("POST", "/v1/messages", error_response(status, kind, text))
    with pytest.raises(errors.ProviderError) as info:
        await provider.chat(request())
    error = info.value
    assert type(error) is expected
    assert error.status == status
    assert error.provider == "p" and error.model == MODEL
    assert error.request_id == REQUEST_ID
    assert error.message == text
    assert API_KEY not in str(error) and API_KEY not in repr(error)


async def test_spend_limit_429_is_quota_not_rate_limit(
    route: Route, provider: AnthropicProvider
) -> None:
    route.expect(
        "POST",
        "/v1/messages",
        FakeResponse.json_body(
            {
                "type": "error",
                "error": {
                    "type": "rate_limit_error",
                    "message": "You have reached your monthly spend limit.",
                    "details": {"error_code": "enforced_spend_limit_reached"},
                },
            },
            status=429,
        ),
    )
    with pytest.raises(errors.QuotaExceededError) as info:
        await provider.chat(request())
    assert not info.value.retryable


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": RESET}, 0.0),  # a date in the past: no wait
        ({}, None),
    ],
)
async def test_retry_after_forms(
    route: Route, provider: AnthropicProvider, headers: dict[str, str], expected: float | None
) -> None:
    route.expect(
        "POST", "/v1/messages", error_response(429, "rate_limit_error", "slow down", headers)
    )
    with pytest.raises(errors.RateLimitError) as info:
        await provider.chat(request())
    assert info.value.retry_after == expected
    assert info.value.retryable


async def test_retry_after_http_date_in_the_future(
    route: Route, provider: AnthropicProvider
) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    route.expect(
        "POST",
        "/v1/messages",
        error_response(529, "overloaded_error", "Overloaded", {"retry-after": when}),
    )
    with pytest.raises(errors.OverloadedError) as info:
        await provider.chat(request())
    assert info.value.retry_after is not None and 25 <= info.value.retry_after <= 31


async def test_error_bodies_that_are_not_json(route: Route, provider: AnthropicProvider) -> None:
    route.expect(
        "POST",
        "/v1/messages",
        FakeResponse.text_body(
            "<html>502 Bad Gateway</html>",
            status=502,
            content_type="text/html",
            headers={"cf-ray": "8f1e2d3c"},
        ),
    )
    with pytest.raises(errors.ServerError) as info:
        await provider.chat(request())
    assert "502 Bad Gateway" in info.value.message
    assert info.value.request_id == "8f1e2d3c"


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (FakeResponse.text_body("upstream said no", content_type="text/plain"), "not JSON"),
        (FakeResponse.json_body([1, 2]), "JSON object"),
        (FakeResponse.json_body({"id": "msg_1", "type": "message"}), "content"),
        (FakeResponse.json_body({"content": [{"type": "text", "text": 5}]}), "content[0].text"),
        (
            FakeResponse.json_body(
                {"content": [{"type": "tool_use", "id": "t", "name": "x", "input": "{}"}]}
            ),
            "input",
        ),
        (FakeResponse.json_body({"content": [{"type": "tool_use", "input": {}}]}), "name"),
        (FakeResponse.json_body({"content": ["text"]}), "content[0]"),
    ],
)
async def test_malformed_success_bodies(
    route: Route, provider: AnthropicProvider, body: FakeResponse, what: str
) -> None:
    route.expect("POST", "/v1/messages", body)
    with pytest.raises(errors.MalformedResponseError) as info:
        await provider.chat(request())
    assert what in info.value.message
    assert info.value.provider == "p"
    assert "anthropic" in info.value.message
    assert info.value.__cause__ is None or not isinstance(info.value.__cause__, KeyError)


async def test_missing_key_names_the_variable(
    route: Route, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MY_CLAUDE_KEY", raising=False)
    provider = make_provider(route.base_url, api_key_env="MY_CLAUDE_KEY")
    with pytest.raises(errors.AuthenticationError, match="MY_CLAUDE_KEY"):
        await provider.chat(request())
    assert route.requests == []


async def test_no_key_env_sends_no_key(route: Route) -> None:
    provider = make_provider(route.base_url, api_key_env="")
    route.expect("POST", "/v1/messages", ok())
    await provider.chat(request())
    await provider.aclose()
    assert "x-api-key" not in route.requests[-1].headers


async def test_connection_reset_is_a_network_error(
    route: Route, provider: AnthropicProvider
) -> None:
    route.expect("POST", "/v1/messages", FakeResponse(status=200, pieces=['{"id": '], reset=True))
    with pytest.raises(errors.NetworkError) as info:
        await provider.chat(request())
    assert info.value.retryable and info.value.provider == "p"


async def test_total_timeout(route: Route, api_key: str) -> None:
    provider = make_provider(route.base_url, timeout=0.3)
    route.expect(
        "POST",
        "/v1/messages",
        FakeResponse(
            status=200,
            headers={"content-type": "application/json"},
            pieces=[Pause(1.0), '{"content": []}'],
        ),
    )
    started = time.monotonic()
    with pytest.raises(errors.TimeoutError) as info:
        await provider.chat(request())
    await provider.aclose()
    assert time.monotonic() - started < 0.9
    assert "timeout=0.3" in info.value.message
    assert info.value.retryable
