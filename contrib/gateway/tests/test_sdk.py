"""The official ``openai`` SDK, unchanged, against ``llmkernel serve`` with the mock
provider and a fake OpenAI upstream behind it."""

from __future__ import annotations

import base64
import json
import struct

import httpx
import openai
import pytest

from llmkernel_http.testing.fake_server import FakeResponse
from llmkernel_mock.provider import _vector

from .conftest import UPSTREAM_KEY, Gateway, Upstream

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}


def client(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=30)


def aclient(gateway: Gateway, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=30)


def sse(*chunks: object) -> FakeResponse:
    return FakeResponse.sse([f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"])


def upstream_chunk(delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
    return {
        "id": "chatcmpl-up",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


UPSTREAM_USAGE = {
    "id": "chatcmpl-up",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [],
    "usage": {
        "prompt_tokens": 30,
        "completion_tokens": 12,
        "total_tokens": 42,
        "prompt_tokens_details": {"cached_tokens": 10},
        "completion_tokens_details": {"reasoning_tokens": 4},
    },
}


# ----------------------------------------------------------------------------- chat


def test_chat_sync_through_the_sdk(gateway: Gateway, keys: dict[str, str]) -> None:
    raw = client(gateway, keys["team"]).chat.completions.with_raw_response.create(
        model="mock/echo", messages=[{"role": "user", "content": "hello gateway"}]
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == "mock/echo"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "hello gateway"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 2
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 0
    assert raw.headers["x-llmkernel-provider"] == "mock"
    assert raw.headers["x-llmkernel-model"] == "echo"
    assert raw.headers["x-llmkernel-cost"] == "0"
    assert raw.headers["x-llmkernel-cache"] == "miss"
    assert raw.headers["x-llmkernel-attempts"] == "1"
    assert (
        raw.headers["x-request-id"] and completion.id == f"chatcmpl-{raw.headers['x-request-id']}"
    )


async def test_chat_async_through_the_sdk(gateway: Gateway, keys: dict[str, str]) -> None:
    async with aclient(gateway, keys["team"]) as sdk:
        completion = await sdk.chat.completions.create(
            model="fast",
            messages=[
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "async hello"},
            ],
            max_tokens=50,
            temperature=0.2,
        )
    assert completion.choices[0].message.content == "async hello"
    assert completion.model == "mock/echo"  # the alias answered by its target


def test_a_request_id_sent_by_the_client_is_kept(gateway: Gateway, keys: dict[str, str]) -> None:
    raw = client(gateway, keys["team"]).chat.completions.with_raw_response.create(
        model="mock/echo",
        messages=[{"role": "user", "content": "x"}],
        extra_headers={"x-request-id": "trace-42"},
    )
    assert raw.headers["x-request-id"] == "trace-42"


def test_stream_through_the_sdk(gateway: Gateway, keys: dict[str, str]) -> None:
    stream = client(gateway, keys["team"]).chat.completions.create(
        model="mock/echo",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    assert all(c.usage is None for c in chunks[:-1])


async def test_stream_async_without_usage(gateway: Gateway, keys: dict[str, str]) -> None:
    async with aclient(gateway, keys["team"]) as sdk:
        stream = await sdk.chat.completions.create(
            model="mock/echo", messages=[{"role": "user", "content": "a b"}], stream=True
        )
        chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "a b"
    assert all(c.usage is None and len(c.choices) == 1 for c in chunks)


def test_tools_through_the_sdk(gateway: Gateway, keys: dict[str, str]) -> None:
    sdk = client(gateway, keys["team"])
    messages: list[dict[str, object]] = [{"role": "user", "content": "weather in Paris?"}]
    completion = sdk.chat.completions.create(
        model="mock/chat", messages=messages, tools=[WEATHER_TOOL], tool_choice="auto"
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments["city"], str) and isinstance(arguments["days"], int)
    # the tool result goes back through the gateway in OpenAI's shape
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    follow_up = sdk.chat.completions.create(model="mock/chat", messages=messages)
    assert follow_up.choices[0].message.content == "The tool returned: sunny"


def test_streamed_tool_call_arrives_through_the_sdk(gateway: Gateway, keys: dict[str, str]) -> None:
    stream = client(gateway, keys["team"]).chat.completions.create(
        model="mock/chat",
        messages=[{"role": "user", "content": "weather?"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += delta.id or ""
            if delta.function is not None:
                entry["name"] += delta.function.name or ""
                entry["arguments"] += delta.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["name"] == "get_weather" and calls[0]["id"].startswith("call_")
    arguments = json.loads(calls[0]["arguments"])
    assert set(arguments) == {"city", "days"}


def test_embeddings_base64_by_default_and_float(gateway: Gateway, keys: dict[str, str]) -> None:
    sdk = client(gateway, keys["team"])
    default = sdk.embeddings.create(model="mock/embed", input=["alpha", "beta"])
    floats = sdk.embeddings.create(model="mock/embed", input="alpha", encoding_format="float")
    assert [d.index for d in default.data] == [0, 1]
    expected = _vector(0, "alpha", 8)
    packed = struct.unpack("<8f", struct.pack("<8f", *expected))
    assert default.data[0].embedding == pytest.approx(list(packed))
    assert floats.data[0].embedding == pytest.approx(expected)
    assert default.model == "mock/embed" and default.usage.prompt_tokens > 0


def test_embeddings_raw_base64_wire(gateway: Gateway, keys: dict[str, str]) -> None:
    answer = httpx.post(
        f"{gateway.url}/v1/embeddings",
        json={"model": "mock/embed", "input": "alpha", "encoding_format": "base64"},
        headers={"authorization": f"Bearer {keys['team']}"},
    ).json()
    vector = struct.unpack("<8f", base64.b64decode(answer["data"][0]["embedding"]))
    assert list(vector) == pytest.approx(_vector(0, "alpha", 8), rel=1e-6)


def test_models_lists_what_the_key_may_use(gateway: Gateway, keys: dict[str, str]) -> None:
    everything = {m.id for m in client(gateway, keys["team"]).models.list()}
    assert {"mock/echo", "mock/chat", "mock/embed", "up/gpt-4o-mini", "fast"} <= everything
    limited = {m.id for m in client(gateway, keys["echo-only"]).models.list()}
    assert limited == {"mock/echo", "fast"}


# ----------------------------------------------------------------------------- upstream


def test_chat_through_a_fake_openai_upstream(
    gateway: Gateway, keys: dict[str, str], upstream: Upstream
) -> None:
    upstream.answer(
        FakeResponse.json_body(
            {
                "id": "chatcmpl-up",
                "object": "chat.completion",
                "created": 1,
                "model": "gpt-4o-mini-2024-07-18",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "from upstream"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": UPSTREAM_USAGE["usage"],
            }
        )
    )
    completion = client(gateway, keys["team"]).chat.completions.create(
        model="up/gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        seed=7,
        max_completion_tokens=20,
        stop=["END"],
    )
    assert completion.choices[0].message.content == "from upstream"
    assert completion.model == "up/gpt-4o-mini-2024-07-18"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 10  # type: ignore[union-attr]
    assert completion.usage.completion_tokens_details.reasoning_tokens == 4  # type: ignore[union-attr]
    (sent,) = upstream.server.requests
    body = sent.json()
    assert body["model"] == "gpt-4o-mini" and body["seed"] == 7 and body["stop"] == ["END"]
    assert body["max_tokens"] == 20
    # the upstream sees the gateway's provider key, never the client's key
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert keys["team"] not in sent.body.decode()


def test_stream_chunks_have_openai_exact_shape(
    gateway: Gateway, keys: dict[str, str], upstream: Upstream
) -> None:
    upstream.answer(
        sse(
            upstream_chunk(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_abc",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        }
                    ],
                }
            ),
            upstream_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city"'}}]}),
            upstream_chunk(
                {"tool_calls": [{"index": 0, "function": {"arguments": ':"Paris","days":2}'}}]}
            ),
            upstream_chunk({}, finish="tool_calls"),
            UPSTREAM_USAGE,
        )
    )
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        headers={"authorization": f"Bearer {keys['team']}"},
        json={
            "model": "up/gpt-4o-mini",
            "messages": [{"role": "user", "content": "weather?"}],
            "tools": [WEATHER_TOOL],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        timeout=30,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-llmkernel-provider"] == "up"
        assert response.headers["x-llmkernel-model"] == "gpt-4o-mini"
        body = response.read().decode()
    events = body.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    head = {k: chunks[0][k] for k in ("id", "created")}
    assert head["id"].startswith("chatcmpl-")

    def expect(delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
        return {
            **head,
            "object": "chat.completion.chunk",
            "model": "up/gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            "usage": None,
        }

    assert chunks == [
        expect({"role": "assistant", "content": ""}),
        expect(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_abc",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        expect({"tool_calls": [{"index": 0, "function": {"arguments": '{"city"'}}]}),
        expect({"tool_calls": [{"index": 0, "function": {"arguments": ':"Paris","days":2}'}}]}),
        expect({}, "tool_calls"),
        {
            **head,
            "object": "chat.completion.chunk",
            "model": "up/gpt-4o-mini",
            "choices": [],
            "usage": {
                "prompt_tokens": 30,
                "completion_tokens": 12,
                "total_tokens": 42,
                "prompt_tokens_details": {"cached_tokens": 10},
                "completion_tokens_details": {"reasoning_tokens": 4},
                "cost": None,  # a custom base_url: unpriced (the mock's cost: test_hardening)
            },
        },
    ]


def test_upstream_stream_failure_after_first_token_ends_with_an_error_chunk(
    gateway: Gateway, keys: dict[str, str], upstream: Upstream
) -> None:
    upstream.answer(
        FakeResponse.sse(
            [f"data: {json.dumps(upstream_chunk({'content': 'partial'}))}\n\n"], truncate=True
        )
    )
    stream = client(gateway, keys["team"]).chat.completions.create(
        model="up/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)
    assert "partial" in received
    assert caught.value.code == "upstream_error"  # a NetworkError from the cut upstream
    assert "connection failed" in caught.value.message
