"""An ``openai`` provider with ``wire_api = "responses"`` against a fake server that
speaks OpenAI's Responses API (the ``response`` object and its typed SSE events, as
the API reference and the official SDK's types describe them, read 2026-12-07)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from llmkernel import errors
from llmkernel.provider import ProviderConfig
from llmkernel.types import (
    ChatRequest,
    Message,
    Reasoning,
    ReasoningPart,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolChoice,
    Usage,
)
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer
from llmkernel_openai.provider import OpenAIProvider

KEY = "sk-test-SECRET-responses-0123"
KEY_ENV = "LLMKERNEL_OPENAI_RESPONSES_KEY"
WEATHER = Tool(
    name="get_weather",
    description="The weather.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)
USAGE = {
    "input_tokens": 40,
    "input_tokens_details": {"cached_tokens": 16},
    "output_tokens": 20,
    "output_tokens_details": {"reasoning_tokens": 8},
    "total_tokens": 60,
}


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


@pytest.fixture
async def provider(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[OpenAIProvider]:
    monkeypatch.setenv(KEY_ENV, KEY)
    options = {"base_url": server.url + "/v1", "api_key_env": KEY_ENV, "wire_api": "responses"}
    instance = OpenAIProvider(ProviderConfig(name="oa", type="openai", options=options))
    yield instance
    await instance.aclose()


def response_object(output: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "id": "resp_up1",
        "object": "response",
        "created_at": 1,
        "status": "completed",
        "model": "gpt-5-2025-08-07",
        "output": output,
        "usage": USAGE,
        **extra,
    }


def sse(*events: dict[str, Any]) -> FakeResponse:
    pieces = [
        f"event: {e['type']}\ndata: {json.dumps({**e, 'sequence_number': i})}\n\n"
        for i, e in enumerate(events)
    ]
    return FakeResponse.sse(pieces)


async def test_request_body_carries_the_conversation_as_items(
    provider: OpenAIProvider, server: FakeServer
) -> None:
    server.expect(
        "POST",
        "/v1/responses",
        FakeResponse.json_body(
            response_object(
                [
                    {
                        "type": "message",
                        "id": "msg_1",
                        "role": "assistant",
                        "status": "completed",
                        "content": [{"type": "output_text", "text": "18C", "annotations": []}],
                    }
                ]
            )
        ),
    )
    request = ChatRequest(
        model="gpt-5",
        messages=(
            Message.system("Be brief."),
            Message.user("Weather in Paris?"),
            Message(
                role="assistant",
                content=(ReasoningPart(text="look it up", signature="rs_9:ENCRYPTED"),),
                tool_calls=(
                    ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"}),
                ),
            ),
            Message.tool_result("call_1", "18C and sunny"),
        ),
        tools=(WEATHER,),
        tool_choice=ToolChoice(mode="tool", name="get_weather"),
        max_tokens=300,
        response_format=ResponseFormat(type="json_schema", schema={"type": "object"}, name="w"),
        reasoning=Reasoning(effort="low"),
    )
    answer = await provider.chat(request)
    assert answer.text == "18C"
    sent = server.requests[-1].json()
    assert server.requests[-1].headers["authorization"] == f"Bearer {KEY}"
    assert sent["store"] is False
    assert sent["input"] == [
        {"role": "system", "content": [{"type": "input_text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
        {
            "type": "reasoning",
            "id": "rs_9",
            "summary": [{"type": "summary_text", "text": "look it up"}],
            "encrypted_content": "ENCRYPTED",
        },
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "18C and sunny"},
    ]
    assert sent["tools"][0] == {
        "type": "function",
        "name": "get_weather",
        "description": "The weather.",
        "parameters": dict(WEATHER.parameters),
        "strict": False,
    }
    assert sent["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert sent["max_output_tokens"] == 300
    assert sent["text"]["format"]["type"] == "json_schema"
    assert sent["reasoning"] == {"effort": "low", "summary": "auto"}
    assert sent["include"] == ["reasoning.encrypted_content"]


async def test_a_whole_answer_is_normalized(provider: OpenAIProvider, server: FakeServer) -> None:
    output = [
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "hmm"}],
            "encrypted_content": "ENC",
        },
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_7",
            "name": "get_weather",
            "arguments": '{"city":"Oslo"}',
            "status": "completed",
        },
    ]
    server.expect("POST", "/v1/responses", FakeResponse.json_body(response_object(output)))
    answer = await provider.chat(
        ChatRequest(model="gpt-5", messages=(Message.user("Oslo?"),), tools=(WEATHER,))
    )
    assert answer.finish_reason == "tool_calls"
    assert answer.tool_calls == (
        ToolCall(id="call_7", name="get_weather", arguments={"city": "Oslo"}),
    )
    assert answer.message.content == (ReasoningPart(text="hmm", signature="rs_1:ENC"),)
    assert answer.usage == Usage(
        input_tokens=40, output_tokens=20, cached_input_tokens=16, reasoning_tokens=8
    )
    assert answer.id == "resp_up1"


async def test_incomplete_is_length(provider: OpenAIProvider, server: FakeServer) -> None:
    body = response_object(
        [
            {
                "type": "message",
                "id": "m",
                "role": "assistant",
                "status": "incomplete",
                "content": [{"type": "output_text", "text": "Once upon", "annotations": []}],
            }
        ],
        status="incomplete",
        incomplete_details={"reason": "max_output_tokens"},
    )
    server.expect("POST", "/v1/responses", FakeResponse.json_body(body))
    answer = await provider.chat(ChatRequest(model="gpt-5", messages=(Message.user("story"),)))
    assert (answer.text, answer.finish_reason) == ("Once upon", "length")


async def test_a_stream_of_typed_events(provider: OpenAIProvider, server: FakeServer) -> None:
    head = response_object([], status="in_progress", usage=None)
    call = {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": "",
        "status": "in_progress",
    }
    server.expect(
        "POST",
        "/v1/responses",
        sse(
            {"type": "response.created", "response": head},
            {"type": "response.in_progress", "response": head},
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {"type": "reasoning", "id": "rs_1", "summary": []},
            },
            {
                "type": "response.reasoning_summary_text.delta",
                "item_id": "rs_1",
                "output_index": 0,
                "summary_index": 0,
                "delta": "thinking",
            },
            {
                "type": "response.output_item.done",
                "output_index": 0,
                "item": {
                    "type": "reasoning",
                    "id": "rs_1",
                    "summary": [],
                    "encrypted_content": "E",
                },
            },
            {
                "type": "response.output_item.added",
                "output_index": 1,
                "item": {
                    "type": "message",
                    "id": "msg_1",
                    "role": "assistant",
                    "content": [],
                    "status": "in_progress",
                },
            },
            {
                "type": "response.output_text.delta",
                "item_id": "msg_1",
                "output_index": 1,
                "content_index": 0,
                "delta": "Let me ",
                "logprobs": [],
            },
            {
                "type": "response.output_text.delta",
                "item_id": "msg_1",
                "output_index": 1,
                "content_index": 0,
                "delta": "check.",
                "logprobs": [],
            },
            {"type": "response.output_item.added", "output_index": 2, "item": call},
            {
                "type": "response.function_call_arguments.delta",
                "item_id": "fc_1",
                "output_index": 2,
                "delta": '{"city":',
            },
            {
                "type": "response.function_call_arguments.delta",
                "item_id": "fc_1",
                "output_index": 2,
                "delta": '"Rome"}',
            },
            {"type": "response.completed", "response": response_object([])},
        ),
    )
    request = ChatRequest(model="gpt-5", messages=(Message.user("Rome?"),), tools=(WEATHER,))
    events = [e async for e in provider.stream(request)]
    kinds = [e.type for e in events]
    assert kinds[-2:] == ["usage", "finish"]
    assert "".join(e.text for e in events if e.type == "text") == "Let me check."
    calls = [e for e in events if e.type == "tool_call"]
    assert calls[0].id == "call_1" and calls[0].name == "get_weather"
    assert "".join(c.arguments for c in calls) == '{"city":"Rome"}'
    reasoning = [e for e in events if e.type == "reasoning"]
    assert reasoning[0].text == "thinking" and reasoning[-1].signature == "rs_1:E"
    assert events[-1].finish_reason == "tool_calls"  # type: ignore[union-attr]
    assert events[-2].usage.cached_input_tokens == 16  # type: ignore[union-attr]


async def test_a_failed_event_mid_stream_raises(
    provider: OpenAIProvider, server: FakeServer
) -> None:
    head = response_object([], status="in_progress", usage=None)
    failed = response_object(
        [], status="failed", error={"code": "server_error", "message": "boom"}, usage=None
    )
    server.expect(
        "POST",
        "/v1/responses",
        sse(
            {"type": "response.created", "response": head},
            {
                "type": "response.output_text.delta",
                "item_id": "m",
                "output_index": 0,
                "content_index": 0,
                "delta": "Hel",
            },
            {"type": "response.failed", "response": failed},
        ),
    )
    got: list[str] = []
    with pytest.raises(errors.ProviderError, match="boom"):
        async for event in provider.stream(
            ChatRequest(model="gpt-5", messages=(Message.user("x"),))
        ):
            if event.type == "text":
                got.append(event.text)
    assert got == ["Hel"]


async def test_a_stream_cut_before_its_end_is_a_network_error(
    provider: OpenAIProvider, server: FakeServer
) -> None:
    head = response_object([], status="in_progress", usage=None)
    server.expect(
        "POST",
        "/v1/responses",
        sse(
            {"type": "response.created", "response": head},
            {
                "type": "response.output_text.delta",
                "item_id": "m",
                "output_index": 0,
                "content_index": 0,
                "delta": "Hel",
            },
        ),
    )
    with pytest.raises(errors.NetworkError, match="cut off"):
        async for _ in provider.stream(ChatRequest(model="gpt-5", messages=(Message.user("x"),))):
            pass


async def test_stop_sequences_are_refused(provider: OpenAIProvider) -> None:
    with pytest.raises(errors.InvalidRequestError, match="stop"):
        await provider.chat(
            ChatRequest(model="gpt-5", messages=(Message.user("x"),), stop=("END",))
        )


async def test_an_error_status_is_the_kernels(provider: OpenAIProvider, server: FakeServer) -> None:
    server.expect(
        "POST",
        "/v1/responses",
        FakeResponse.json_body(
            {
                "error": {
                    "message": "Rate limit reached",
                    "type": "requests",
                    "code": "rate_limit_exceeded",
                    "param": None,
                }
            },
            status=429,
            headers={"retry-after": "3"},
        ),
    )
    with pytest.raises(errors.RateLimitError) as info:
        await provider.chat(ChatRequest(model="gpt-5", messages=(Message.user("x"),)))
    assert info.value.retry_after == 3


def test_a_pdf_is_an_input_file_item() -> None:
    from llmkernel.types import FilePart, Message, TextPart
    from llmkernel_openai.responses import input_items

    message = Message(
        role="user",
        content=(
            TextPart(text="summarize"),
            FilePart(media_type="application/pdf", data="JVBERi0=", filename="a.pdf"),
            FilePart(media_type="application/pdf", url="https://example.com/b.pdf"),
        ),
    )
    assert input_items(message) == [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "summarize"},
                {
                    "type": "input_file",
                    "filename": "a.pdf",
                    "file_data": "data:application/pdf;base64,JVBERi0=",
                },
                {"type": "input_file", "file_url": "https://example.com/b.pdf"},
            ],
        }
    ]
