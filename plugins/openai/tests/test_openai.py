"""The openai provider against OpenAI's wire format, beyond the shared contract.

Payload shapes follow OpenAI's API reference (Chat Completions, streaming chunks,
Embeddings, Models, error bodies) and the documented extensions of compatible
servers (DeepSeek ``reasoning_content``, OpenRouter ``reasoning`` and mid-stream
errors, Groq ``x_groq.usage``). One fake server serves the module; each test gets
its own path prefix, so scripted routes never leak between tests.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import struct
from collections.abc import Iterator
from typing import Any

import pytest

import llmkernel_openai.plugin
from llmkernel import errors
from llmkernel.kernel import Kernel
from llmkernel.provider import ProviderConfig
from llmkernel.types import (
    ChatRequest,
    EmbeddingRequest,
    ImagePart,
    Message,
    Reasoning,
    ReasoningPart,
    ResponseFormat,
    StreamEvent,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    Usage,
)
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer, Gate, Pause
from llmkernel_openai.provider import OpenAIProvider

KEY = "sk-test-SECRET-0123456789abcdef"
KEY_ENV = "LLMKERNEL_OPENAI_TEST_KEY"
_prefixes = itertools.count()


# ----------------------------------------------------------------------------- wire


def chunk(
    delta: dict[str, Any] | None = None,
    *,
    finish: str | None = None,
    usage: dict[str, Any] | None = None,
    empty: bool = False,
    model: str = "gpt-4o-2024-08-06",
    **extra: Any,
) -> str:
    body: dict[str, Any] = {
        "id": "chatcmpl-X1",
        "object": "chat.completion.chunk",
        "created": 1727000000,
        "model": model,
        "system_fingerprint": "fp_1",
        "choices": []
        if empty
        else [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
        **extra,
    }
    return f"data: {json.dumps(body)}\n\n"


DONE = "data: [DONE]\n\n"


def usage_json(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion(
    message: dict[str, Any],
    *,
    finish: str = "stop",
    usage: dict[str, Any] | None = None,
    model: str = "gpt-4o-2024-08-06",
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-X1",
        "object": "chat.completion",
        "created": 1727000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "refusal": None, **message},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": usage if usage is not None else usage_json(10, 5),
    }


def stream_of(*texts: str, usage: dict[str, Any] | None = None) -> list[Any]:
    pieces: list[Any] = [chunk({"role": "assistant", "content": ""})]
    pieces += [chunk({"content": t}) for t in texts]
    pieces += [chunk(finish="stop"), chunk(empty=True, usage=usage or usage_json(10, 5)), DONE]
    return pieces


def error_body(
    message: str,
    type_: str | None = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


class Site:
    """A fake OpenAI at its own prefix of the shared server."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.prefix = f"/t{next(_prefixes)}"
        self.base_url = f"{server.url}{self.prefix}/v1"

    def expect(self, method: str, path: str, *responses: FakeResponse) -> None:
        self.server.expect(method, f"{self.prefix}/v1{path}", *responses)

    def requests(self, path: str = "/chat/completions") -> list[Any]:
        return self.server.requests_to(f"{self.prefix}/v1{path}")

    def body(self, index: int = -1, path: str = "/chat/completions") -> Any:
        return self.requests(path)[index].json()

    def provider(self, **options: Any) -> OpenAIProvider:
        options = {"base_url": self.base_url, "api_key_env": KEY_ENV, **options}
        return OpenAIProvider(ProviderConfig(name="oai", type="openai", options=options))


@pytest.fixture
def site(shared_server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> Site:
    monkeypatch.setenv(KEY_ENV, KEY)
    return Site(shared_server)


def request(*messages: Message, model: str = "gpt-4o", **kwargs: Any) -> ChatRequest:
    return ChatRequest(model=model, messages=messages or (Message.user("hi"),), **kwargs)


async def collect(provider: OpenAIProvider, req: ChatRequest) -> list[StreamEvent]:
    try:
        return [event async for event in provider.stream(req)]
    finally:
        await provider.aclose()


async def chat(provider: OpenAIProvider, req: ChatRequest) -> Any:
    try:
        return await provider.chat(req)
    finally:
        await provider.aclose()


# ----------------------------------------------------------------------------- requests


async def test_request_body_and_headers(site: Site) -> None:
    site.expect("POST", "/chat/completions", FakeResponse.json_body(completion({"content": "ok"})))
    provider = site.provider(organization="org-42", project="proj_7", headers={"X-Trace": "t1"})
    req = request(
        Message.system("Be brief."),
        Message(role="user", content=(TextPart(text="hi"),), name="ann"),
        model="gpt-4o",
        max_tokens=50,
        temperature=0.2,
        top_p=0.9,
        stop=("END",),
        user="u-1",
        options={"seed": 7, "parallel_tool_calls": False},
    )
    await chat(provider, req)
    sent = site.requests()[-1]
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["openai-organization"] == "org-42"
    assert sent.headers["openai-project"] == "proj_7"
    assert sent.headers["x-trace"] == "t1"
    assert sent.headers["content-type"] == "application/json"
    assert sent.query == {}
    assert sent.json() == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi", "name": "ann"},
        ],
        "max_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["END"],
        "user": "u-1",
        "seed": 7,
        "parallel_tool_calls": False,
    }


async def test_stream_flags_and_api_version(site: Site) -> None:
    site.expect("POST", "/chat/completions", FakeResponse.sse(stream_of("a", "b")))
    await collect(site.provider(api_version="2024-10-21"), request())
    sent = site.requests()[-1]
    assert sent.query == {"api-version": ["2024-10-21"]}
    assert sent.headers["accept"] == "text/event-stream"
    body = sent.json()
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ("gpt-4o", "max_tokens"),
        ("gpt-4.1-mini", "max_tokens"),
        ("llama-3.3-70b", "max_tokens"),
        ("o1", "max_completion_tokens"),
        ("o3-mini", "max_completion_tokens"),
        ("o4-mini-2025-04-16", "max_completion_tokens"),
        ("gpt-5", "max_completion_tokens"),
        ("gpt-5-mini", "max_completion_tokens"),
        ("openai/o3", "max_completion_tokens"),
    ],
)
async def test_max_tokens_field_by_model(site: Site, model: str, key: str) -> None:
    site.expect("POST", "/chat/completions", FakeResponse.json_body(completion({"content": "x"})))
    await chat(site.provider(), request(model=model, max_tokens=99))
    body = site.body()
    assert body[key] == 99
    assert {"max_tokens", "max_completion_tokens"} - {key} & body.keys() == set()


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        (ToolChoice(mode="auto"), "auto"),
        (ToolChoice(mode="none"), "none"),
        (ToolChoice(mode="required"), "required"),
        (
            ToolChoice(mode="tool", name="get_weather"),
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
async def test_tools_and_tool_choice(site: Site, choice: ToolChoice, wire: Any) -> None:
    site.expect("POST", "/chat/completions", FakeResponse.json_body(completion({"content": "x"})))
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    tools = (
        Tool(name="get_weather", description="Weather now.", parameters=schema, strict=True),
        Tool(name="noop"),
    )
    await chat(site.provider(), request(tools=tools, tool_choice=choice))
    body = site.body()
    assert body["tool_choice"] == wire
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather now.",
                "parameters": schema,
                "strict": True,
            },
        },
        {
            "type": "function",
            "function": {"name": "noop", "parameters": {"type": "object", "properties": {}}},
        },
    ]


async def test_named_tool_choice_without_name_is_refused(site: Site) -> None:
    with pytest.raises(errors.InvalidRequestError, match="name"):
        await chat(site.provider(), request(tool_choice=ToolChoice(mode="tool")))
    assert site.requests() == []


async def test_images_as_image_url_parts(site: Site) -> None:
    site.expect(
        "POST", "/chat/completions", FakeResponse.json_body(completion({"content": "a cat"}))
    )
    msg = Message(
        role="user",
        content=(
            TextPart(text="What is in these?"),
            ImagePart(url="https://example.com/cat.jpg", detail="low"),
            ImagePart(data="iVBORw0KGgo=", media_type="image/png"),
        ),
    )
    await chat(site.provider(), request(msg))
    assert site.body()["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"},
                },
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        }
    ]


async def test_assistant_tool_calls_and_tool_results_are_sent_back(site: Site) -> None:
    site.expect("POST", "/chat/completions", FakeResponse.json_body(completion({"content": "ok"})))
    calls = (
        ToolCall(id="call_a", name="get_weather", arguments={"city": "Paris"}),
        ToolCall(id="call_b", name="get_weather", arguments={"city": "Oslo"}),
    )
    await chat(
        site.provider(),
        request(
            Message.user("Weather?"),
            Message(role="assistant", content=(TextPart(text="Checking."),), tool_calls=calls),
            Message.tool_result("call_a", "18C"),
            Message.tool_result("call_b", "2C", name="get_weather"),
        ),
    )
    assert site.body()["messages"][1:] == [
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_b", "content": "2C"},
    ]


# ----------------------------------------------------------------------------- answers


async def test_chat_answer_is_normalized(site: Site) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.json_body(
            completion(
                {"content": "Hello!"}, usage=usage_json(2006, 300, cached=1920, reasoning=128)
            )
        ),
    )
    response = await chat(site.provider(), request())
    assert response.text == "Hello!"
    assert response.message.role == "assistant"
    assert response.id == "chatcmpl-X1"
    assert response.model == "gpt-4o-2024-08-06"
    assert response.finish_reason == "stop"
    assert response.parsed is None and response.refusal is None
    # OpenAI's own convention: prompt_tokens includes cached, completion includes reasoning.
    assert response.usage == Usage(
        input_tokens=2006, output_tokens=300, cached_input_tokens=1920, reasoning_tokens=128
    )
    assert response.usage.uncached_input_tokens == 86


@pytest.mark.parametrize(
    ("wire", "ours"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("content_filter", "content_filter"),
        ("tool_calls", "tool_calls"),
        ("function_call", "tool_calls"),
        ("eos", "stop"),
        (None, "stop"),
    ],
)
async def test_finish_reasons(site: Site, wire: str | None, ours: str) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.json_body(completion({"content": "x"}, finish=wire)),
    )  # type: ignore[arg-type]
    assert (await chat(site.provider(), request())).finish_reason == ours


async def test_tool_calls_with_stop_report_tool_calls(site: Site) -> None:
    calls = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "f", "arguments": '{"a": [1, 2]}'},
        },
        {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": ""}},
    ]
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.json_body(completion({"tool_calls": calls}, finish="stop")),
    )
    response = await chat(site.provider(), request())
    assert response.finish_reason == "tool_calls"
    assert response.tool_calls == (
        ToolCall(id="call_1", name="f", arguments={"a": [1, 2]}),
        ToolCall(id="call_2", name="g", arguments={}),
    )
    assert response.message.content == ()


async def test_structured_output_json_schema(site: Site) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "required": ["name"],
        "additionalProperties": False,
    }
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.json_body(completion({"content": '{"name": "Ada"}'})),
    )
    fmt = ResponseFormat(type="json_schema", schema=schema, name="person", strict=True)
    response = await chat(site.provider(), request(response_format=fmt))
    assert site.body()["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": schema, "strict": True},
    }
    assert response.parsed == {"name": "Ada"}


async def test_structured_output_json_object_and_text(site: Site) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.json_body(completion({"content": "[1, 2]"})),
        FakeResponse.json_body(completion({"content": "plain"})),
    )
    provider = site.provider()
    response = await provider.chat(request(response_format=ResponseFormat(type="json_object")))
    assert site.body()["response_format"] == {"type": "json_object"}
    assert response.parsed == [1, 2]
    response = await chat(provider, request(response_format=ResponseFormat(type="text")))
    assert "response_format" not in site.body()
    assert response.parsed is None


async def test_refusal_is_surfaced(site: Site) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.json_body(
            completion({"content": None, "refusal": "I'm sorry, I can't help with that."})
        ),
    )
    fmt = ResponseFormat(type="json_schema", schema={"type": "object"})
    response = await chat(site.provider(), request(response_format=fmt))
    assert response.refusal == "I'm sorry, I can't help with that."
    assert response.parsed is None
    assert response.text == ""


async def test_refusal_when_streaming(site: Site) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.sse(
            [
                chunk({"role": "assistant", "content": None, "refusal": ""}),
                chunk({"refusal": "I'm sorry, "}),
                chunk({"refusal": "I can't."}),
                chunk(finish="stop"),
                chunk(empty=True, usage=usage_json(9, 4)),
                DONE,
            ]
        ),
    )
    events = await collect(site.provider(), request())
    refusals = [e.refusal for e in events if e.type == "metadata" and e.refusal]
    assert refusals == ["I'm sorry, I can't."]
    assert [e.type for e in events][-2:] == ["usage", "finish"]


# ----------------------------------------------------------------------------- reasoning


async def test_reasoning_effort_is_sent_to_reasoning_models(site: Site) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.json_body(
            completion(
                {"content": "42"}, usage=usage_json(30, 500, reasoning=448), model="o3-2025-04-16"
            )
        ),
    )
    response = await chat(site.provider(), request(model="o3", reasoning=Reasoning(effort="high")))
    assert site.body()["reasoning_effort"] == "high"
    assert response.usage.reasoning_tokens == 448
    assert response.usage.output_tokens == 500


@pytest.mark.parametrize(
    ("budget", "effort"),
    [(0, "minimal"), (1024, "low"), (2048, "low"), (4000, "medium"), (32000, "high")],
)
async def test_reasoning_budget_maps_to_an_effort(site: Site, budget: int, effort: str) -> None:
    site.expect("POST", "/chat/completions", FakeResponse.json_body(completion({"content": "x"})))
    await chat(site.provider(), request(model="gpt-5", reasoning=Reasoning(budget_tokens=budget)))
    assert site.body()["reasoning_effort"] == effort


async def test_reasoning_effort_not_sent_to_known_non_reasoning_models(site: Site) -> None:
    site.expect("POST", "/chat/completions", FakeResponse.json_body(completion({"content": "x"})))
    await chat(site.provider(), request(model="gpt-4o-mini", reasoning=Reasoning(effort="low")))
    assert "reasoning_effort" not in site.body()


async def test_deepseek_reasoning_content_streams_as_reasoning(site: Site) -> None:
    model = "deepseek-reasoner"
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.sse(
            [
                chunk({"role": "assistant", "content": None, "reasoning_content": ""}, model=model),
                chunk({"content": None, "reasoning_content": "Think"}, model=model),
                chunk({"content": None, "reasoning_content": "ing..."}, model=model),
                chunk({"content": "Answer", "reasoning_content": None}, model=model),
                chunk(
                    {"content": ""},
                    finish="stop",
                    model=model,
                    usage={
                        "prompt_tokens": 20,
                        "completion_tokens": 60,
                        "total_tokens": 80,
                        "prompt_cache_hit_tokens": 16,
                        "prompt_cache_miss_tokens": 4,
                        "completion_tokens_details": {"reasoning_tokens": 50},
                    },
                ),
                DONE,
            ]
        ),
    )
    events = await collect(site.provider(), request(model=model))
    assert [e.text for e in events if e.type == "reasoning"] == ["Think", "ing..."]
    assert [e.text for e in events if e.type == "text"] == ["Answer"]
    usage = next(e.usage for e in events if e.type == "usage")
    assert usage == Usage(
        input_tokens=20, output_tokens=60, cached_input_tokens=16, reasoning_tokens=50
    )


async def test_openrouter_reasoning_field_and_comments(site: Site) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.sse(
            [
                ": OPENROUTER PROCESSING\n\n",
                chunk({"role": "assistant", "content": "", "reasoning": "Hmm."}),
                chunk({"content": "Yes."}),
                chunk({"content": ""}, finish="stop", usage=usage_json(5, 7, reasoning=3)),
                DONE,
            ]
        ),
    )
    events = await collect(site.provider(), request(model="openai/o4-mini"))
    assert [
        (e.type, getattr(e, "text", None)) for e in events if e.type in ("reasoning", "text")
    ] == [("reasoning", "Hmm."), ("text", "Yes.")]


async def test_reasoning_in_a_whole_answer_and_round_trip(site: Site) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.json_body(
            completion(
                {"content": "4", "reasoning_content": "2+2 is 4."}, model="deepseek-reasoner"
            )
        ),
    )
    provider = site.provider()
    response = await provider.chat(request(model="deepseek-reasoner"))
    assert response.message.content == (ReasoningPart(text="2+2 is 4."), TextPart(text="4"))
    assert response.reasoning == "2+2 is 4."
    follow = request(
        Message.user("2+2?"), response.message, Message.user("and 3+3?"), model="deepseek-reasoner"
    )
    # By default thinking is not sent back (OpenAI and DeepSeek refuse it as input).
    await chat(provider, follow)
    assert site.body()["messages"][1] == {"role": "assistant", "content": "4"}
    # send_reasoning = true sends it as reasoning_content (DeepSeek tool-call turns).
    await chat(site.provider(send_reasoning=True), follow)
    assert site.body()["messages"][1] == {
        "role": "assistant",
        "content": "4",
        "reasoning_content": "2+2 is 4.",
    }


# ----------------------------------------------------------------------------- streams


async def test_stream_event_order_and_metadata(site: Site) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.sse(stream_of("Hel", "lo", usage=usage_json(11, 2, cached=0))),
    )
    events = await collect(site.provider(), request())
    assert [e.type for e in events] == ["metadata", "metadata", "text", "text", "usage", "finish"]
    assert events[0].headers is not None and events[0].headers["content-type"].startswith(
        "text/event-stream"
    )
    assert events[1].id == "chatcmpl-X1" and events[1].model == "gpt-4o-2024-08-06"
    assert events[4].usage == Usage(input_tokens=11, output_tokens=2)
    assert events[5].finish_reason == "stop"


async def test_stream_yields_each_event_as_it_arrives(site: Site) -> None:
    gate = Gate()
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.sse(
            [
                chunk({"role": "assistant", "content": "first"}),
                gate,
                chunk({"content": " second"}),
                chunk(finish="stop"),
                chunk(empty=True, usage=usage_json(1, 2)),
                DONE,
            ]
        ),
    )
    provider = site.provider()
    stream = provider.stream(request())
    seen = []
    async for event in stream:
        seen.append(event)
        if event.type == "text":
            break
    assert [e.type for e in seen] == ["metadata", "metadata", "text"]
    gate.open()
    seen += [e async for e in stream]
    await provider.aclose()
    assert "".join(e.text for e in seen if e.type == "text") == "first second"


async def test_parallel_tool_call_fragments_interleaved(site: Site) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.sse(
            [
                chunk({"role": "assistant", "content": None}),
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_A",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": ""},
                            }
                        ]
                    }
                ),
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 1,
                                "id": "call_B",
                                "type": "function",
                                "function": {"name": "get_time", "arguments": '{"tz"'},
                            }
                        ]
                    }
                ),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Pa'}}]}),
                chunk({"tool_calls": [{"index": 1, "function": {"arguments": ': "UTC"}'}}]}),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ris"}'}}]}),
                chunk(finish="tool_calls"),
                chunk(empty=True, usage=usage_json(50, 20)),
                DONE,
            ]
        ),
    )
    events = await collect(site.provider(), request())
    deltas = [e for e in events if e.type == "tool_call"]
    assert [(d.index, d.id, d.name) for d in deltas][:2] == [
        (0, "call_A", "get_weather"),
        (1, "call_B", "get_time"),
    ]
    assert all(d.id is None and d.name is None for d in deltas[2:])
    joined = {i: "".join(d.arguments for d in deltas if d.index == i) for i in (0, 1)}
    assert json.loads(joined[0]) == {"city": "Paris"}
    assert json.loads(joined[1]) == {"tz": "UTC"}
    assert events[-1].finish_reason == "tool_calls"


async def test_whole_tool_calls_without_index(site: Site) -> None:
    # Some compatible servers send each call whole, without "index".
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.sse(
            [
                chunk(
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "a", "arguments": "{}"},
                            },
                            {
                                "id": "c2",
                                "type": "function",
                                "function": {"name": "b", "arguments": '{"x": 1}'},
                            },
                        ],
                    }
                ),
                chunk(finish="stop"),
                chunk(empty=True, usage=usage_json(1, 1)),
                DONE,
            ]
        ),
    )
    events = await collect(site.provider(), request())
    deltas = [e for e in events if e.type == "tool_call"]
    assert [(d.index, d.id, d.name, d.arguments) for d in deltas] == [
        (0, "c1", "a", "{}"),
        (1, "c2", "b", '{"x": 1}'),
    ]
    assert events[-1].finish_reason == "tool_calls"


async def test_groq_usage_in_x_groq(site: Site) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.sse(
            [
                chunk({"role": "assistant", "content": "Hi"}),
                chunk(
                    finish="stop",
                    x_groq={
                        "id": "req_01",
                        "usage": {
                            "queue_time": 0.02,
                            "prompt_tokens": 18,
                            "prompt_time": 0.001,
                            "completion_tokens": 9,
                            "completion_time": 0.01,
                            "total_tokens": 27,
                        },
                    },
                ),
                DONE,
            ]
        ),
    )
    events = await collect(site.provider(), request(model="llama-3.3-70b-versatile"))
    assert events[-2].usage == Usage(input_tokens=18, output_tokens=9)


async def test_stream_without_usage_still_ends_with_usage_and_finish(site: Site) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.sse([chunk({"role": "assistant", "content": "x"}), DONE]),
    )
    events = await collect(site.provider(), request())
    assert [e.type for e in events] == ["metadata", "metadata", "text", "usage", "finish"]
    assert events[3].usage == Usage()
    assert events[4].finish_reason == "stop"


async def test_server_that_ignores_stream_answers_whole(site: Site) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.json_body(completion({"content": "whole"}, usage=usage_json(3, 1))),
    )
    events = await collect(site.provider(), request())
    assert [e.type for e in events] == ["metadata", "metadata", "text", "usage", "finish"]
    assert events[2].text == "whole"
    assert events[3].usage == Usage(input_tokens=3, output_tokens=1)


async def test_crlf_framing_and_split_pieces(site: Site) -> None:
    raw = "".join(stream_of("one", " two")).replace("\n", "\r\n")
    pieces = [raw[i : i + 7] for i in range(0, len(raw), 7)]
    site.expect("POST", "/chat/completions", FakeResponse.sse(pieces))
    events = await collect(site.provider(), request())
    assert "".join(e.text for e in events if e.type == "text") == "one two"


# ----------------------------------------------------------------------------- errors

STATUS_ERRORS = [
    (
        400,
        error_body("Invalid 'messages': empty array.", param="messages"),
        errors.InvalidRequestError,
    ),
    (
        401,
        error_body("Incorrect API key provided.", code="invalid_api_key"),
        errors.AuthenticationError,
    ),
    (
        403,
        error_body(
            "Country, region, or territory not supported",
            type_="request_forbidden",
            code="unsupported_country_region_territory",
        ),
        errors.PermissionDeniedError,
    ),
    (
        404,
        error_body("The model `gpt-9` does not exist", code="model_not_found"),
        errors.ModelNotFoundError,
    ),
    (408, error_body("Request timed out.", type_=None), errors.TimeoutError),
    (409, error_body("Conflict.", type_=None), errors.ServerError),
    (
        413,
        error_body(
            "Request too large for gpt-4o: Limit 30000, Requested 50000 tokens.",
            type_="tokens",
            code="rate_limit_exceeded",
        ),
        errors.ContextWindowExceededError,
    ),
    (
        422,
        {"detail": [{"loc": ["body", "messages"], "msg": "field required"}]},
        errors.InvalidRequestError,
    ),
    (
        429,
        error_body("Rate limit reached.", type_="requests", code="rate_limit_exceeded"),
        errors.RateLimitError,
    ),
    (
        429,
        error_body(
            "You exceeded your current quota.",
            type_="insufficient_quota",
            code="insufficient_quota",
        ),
        errors.QuotaExceededError,
    ),
    (
        400,
        error_body(
            "This model's maximum context length is 8192 tokens.", code="context_length_exceeded"
        ),
        errors.ContextWindowExceededError,
    ),
    (500, error_body("The server had an error.", type_="server_error"), errors.ServerError),
    (502, error_body("Bad gateway.", type_="server_error"), errors.ServerError),
    (
        503,
        error_body("The engine is currently overloaded.", type_="server_error"),
        errors.OverloadedError,
    ),
]


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
@pytest.mark.parametrize(
    ("status", "body", "kind"),
    STATUS_ERRORS,
    ids=[f"{s}-{k.__name__}" for s, _, k in STATUS_ERRORS],
)
async def test_error_statuses(
    site: Site, status: int, body: Any, kind: type[errors.ProviderError], stream: bool
) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.json_body(body, status=status, headers={"x-request-id": "req_abc123"}),
    )
    provider = site.provider()
    with pytest.raises(errors.ProviderError) as info:
        if stream:
            await collect(provider, request(model="gpt-4o-mini"))
        else:
            await chat(provider, request(model="gpt-4o-mini"))
    error = info.value
    assert type(error) is kind
    assert (error.provider, error.model, error.status) == ("oai", "gpt-4o-mini", status)
    assert error.request_id == "req_abc123"
    expected = body["error"]["message"] if "error" in body else "field required"
    assert expected in str(error)
    assert KEY not in str(error) and KEY not in repr(error)


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # a date in the past
    ],
)
async def test_retry_after_forms(site: Site, headers: dict[str, str], wait: float) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.json_body(
            error_body("Slow down.", type_="tokens", code="rate_limit_exceeded"),
            status=429,
            headers=headers,
        ),
    )
    with pytest.raises(errors.RateLimitError) as info:
        await chat(site.provider(), request())
    assert info.value.retry_after == pytest.approx(wait)
    assert info.value.retryable


async def test_retry_after_http_date_in_the_future(site: Site) -> None:
    import email.utils
    import time

    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.json_body(error_body("Slow down."), status=429, headers={"retry-after": when}),
    )
    with pytest.raises(errors.RateLimitError) as info:
        await chat(site.provider(), request())
    assert 25 <= (info.value.retry_after or 0) <= 31


async def test_error_body_that_is_not_json(site: Site) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.text_body(
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
            status=502,
            content_type="text/html",
        ),
    )
    with pytest.raises(errors.ServerError, match="502 Bad Gateway") as info:
        await chat(site.provider(), request())
    assert info.value.status == 502


@pytest.mark.parametrize(
    "body",
    [
        {"error": "model 'x' not found"},  # llama.cpp / Ollama style
        {
            "object": "error",
            "message": "model 'x' not found",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        },  # Mistral style
    ],
)
async def test_compatible_error_shapes(site: Site, body: Any) -> None:
    site.expect("POST", "/chat/completions", FakeResponse.json_body(body, status=404))
    with pytest.raises(errors.ModelNotFoundError, match="model 'x' not found"):
        await chat(site.provider(), request())


@pytest.mark.parametrize(
    ("error", "kind", "status"),
    [
        (
            {
                "message": "The server had an error while processing your request.",
                "type": "server_error",
                "param": None,
                "code": None,
            },
            errors.ServerError,
            500,
        ),
        (
            {"message": "Rate limit exceeded", "code": 429, "metadata": {}},
            errors.RateLimitError,
            429,
        ),  # OpenRouter: the HTTP status as code
        (
            {
                "message": "You exceeded your current quota.",
                "type": "insufficient_quota",
                "code": "insufficient_quota",
            },
            errors.QuotaExceededError,
            429,
        ),
        ({"message": "Provider overloaded", "code": 502}, errors.ServerError, 502),
    ],
)
async def test_error_inside_a_200_stream(
    site: Site, error: dict[str, Any], kind: type[errors.ProviderError], status: int
) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.sse(
            [
                chunk({"role": "assistant", "content": "Hal"}),
                f"data: {json.dumps({'error': error})}\n\n",
                DONE,
            ],
            headers={"x-request-id": "req_s"},
        ),
    )
    events: list[StreamEvent] = []
    provider = site.provider()
    with pytest.raises(errors.ProviderError) as info:
        async for event in provider.stream(request()):
            events.append(event)
    await provider.aclose()
    assert [e.type for e in events] == ["metadata", "metadata", "text"]
    assert type(info.value) is kind
    assert status >= 400  # the kind's status; the error keeps the HTTP one
    assert info.value.status == 200
    assert info.value.request_id == "req_s"
    assert error["message"] in str(info.value)


async def test_openrouter_mid_stream_error_chunk(site: Site) -> None:
    body = {
        "id": "gen-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "x/y",
        "provider": "z",
        "error": {"code": "server_error", "message": "Provider disconnected"},
        "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
    }
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.sse([chunk({"content": "a"}), f"data: {json.dumps(body)}\n\n", DONE]),
    )
    with pytest.raises(errors.ServerError, match="Provider disconnected"):
        await collect(site.provider(), request())


async def test_sse_error_event(site: Site) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.sse(
            ['event: error\ndata: {"message": "Too many tokens", "type": "rate_limit_error"}\n\n']
        ),
    )
    with pytest.raises(errors.RateLimitError, match="Too many tokens"):
        await collect(site.provider(), request())


async def test_error_object_in_a_200_chat_body(site: Site) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.json_body({"error": {"message": "Upstream timed out", "code": 504}}),
    )
    with pytest.raises(errors.TimeoutError, match="Upstream timed out"):
        await chat(site.provider(), request())


@pytest.mark.parametrize(
    ("body", "what"),
    [
        ("not json at all", "not JSON"),
        (json.dumps({"id": "x", "choices": []}), "no choices"),
        (json.dumps({"id": "x", "choices": "nope"}), "no choices"),
        (json.dumps({"choices": [{"index": 0, "finish_reason": "stop"}]}), "message is missing"),
        (json.dumps({"choices": [{"message": {"content": 5}}]}), "content is not a string"),
        (json.dumps([1, 2]), "JSON object"),
        (
            json.dumps(
                {
                    "choices": [
                        {
                            "message": {
                                "tool_calls": [
                                    {"id": "c", "function": {"name": "f", "arguments": "{oops"}}
                                ]
                            }
                        }
                    ]
                }
            ),
            "not valid JSON",
        ),
        (json.dumps({"choices": [{"message": {"tool_calls": [{"id": "c"}]}}]}), "function"),
    ],
)
async def test_malformed_chat_bodies(site: Site, body: str, what: str) -> None:
    site.expect(
        "POST", "/chat/completions", FakeResponse.text_body(body, content_type="application/json")
    )
    with pytest.raises(errors.MalformedResponseError, match=what) as info:
        await chat(site.provider(), request())
    assert info.value.provider == "oai"
    assert "oai" in str(info.value)
    assert not isinstance(info.value.__cause__, KeyError | TypeError)


@pytest.mark.parametrize(
    ("pieces", "what"),
    [
        (['data: {"choices": [\n\n'], "not JSON"),
        (["data: [1, 2]\n\n"], "not a JSON object"),
        (['data: {"choices": {"a": 1}}\n\n'], "not a list"),
        (['data: {"choices": [{"delta": "text"}]}\n\n'], "delta is not an object"),
        (['data: {"choices": [{"delta": {"tool_calls": 3}}]}\n\n'], "tool_calls"),
    ],
)
async def test_malformed_stream_events(site: Site, pieces: list[str], what: str) -> None:
    site.expect("POST", "/chat/completions", FakeResponse.sse(pieces))
    with pytest.raises(errors.MalformedResponseError, match=what):
        await collect(site.provider(), request())


async def test_stream_body_that_is_not_an_event_stream(site: Site) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.text_body("<html>Service Unavailable</html>", content_type="text/html"),
    )
    with pytest.raises(errors.MalformedResponseError, match="not an event stream"):
        await collect(site.provider(), request())


async def test_stream_that_ends_cleanly_without_done_is_truncated(site: Site) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.sse([chunk({"role": "assistant", "content": "Hi"}), chunk(finish="stop")]),
    )
    events: list[StreamEvent] = []
    provider = site.provider()
    with pytest.raises(errors.NetworkError, match=r"\[DONE\]") as info:
        async for event in provider.stream(request()):
            events.append(event)
    await provider.aclose()
    assert [e.type for e in events] == ["metadata", "metadata", "text"]
    assert info.value.retryable


@pytest.mark.parametrize("reset", [False, True], ids=["cut", "reset"])
async def test_stream_cut_mid_event(site: Site, reset: bool) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.sse(
            [chunk({"role": "assistant", "content": "Hi"}), 'data: {"id": "chatcmpl-X1", "cho'],
            truncate=not reset,
            reset=reset,
        ),
    )
    with pytest.raises(errors.NetworkError) as info:
        await collect(site.provider(), request())
    assert info.value.retryable and info.value.provider == "oai"


async def test_connection_refused(site: Site) -> None:
    server = FakeServer()
    url = server.url
    server.close()
    provider = OpenAIProvider(
        ProviderConfig(
            name="oai", type="openai", options={"base_url": url + "/v1", "api_key_env": KEY_ENV}
        )
    )
    with pytest.raises(errors.NetworkError, match="ConnectError"):
        await chat(provider, request())
    health = await provider.health()
    assert not health.ok and "NetworkError" in health.detail
    await provider.aclose()


async def test_read_timeout_is_a_timeout_error(site: Site) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.sse([chunk({"role": "assistant", "content": "Hi"}), Pause(1.0), DONE]),
    )
    with pytest.raises(errors.TimeoutError):
        await collect(site.provider(read_timeout=0.2), request())


async def test_total_timeout(site: Site) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.sse(
            [
                chunk({"role": "assistant", "content": "a"}),
                Pause(0.15),
                chunk({"content": "b"}),
                Pause(0.15),
                chunk({"content": "c"}),
                Pause(0.15),
                DONE,
            ]
        ),
    )
    with pytest.raises(errors.TimeoutError, match="did not finish"):
        await collect(site.provider(timeout=0.25), request())

    def slow(_: Any) -> FakeResponse:
        import time

        time.sleep(0.4)
        return FakeResponse.json_body(completion({"content": "late"}))

    site.server.expect("POST", f"{site.prefix}/v1/chat/completions", slow)  # type: ignore[arg-type]
    with pytest.raises(errors.TimeoutError, match="no complete answer"):
        await chat(site.provider(timeout=0.2), request())


async def test_first_token_timeout(site: Site) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.sse([Pause(0.5), chunk({"role": "assistant", "content": "late"}), DONE]),
    )
    with pytest.raises(errors.TimeoutError, match="no first token"):
        await collect(site.provider(first_token_timeout=0.15), request())


async def test_first_token_timeout_does_not_cut_a_slow_consumer(site: Site) -> None:
    site.expect("POST", "/chat/completions", FakeResponse.sse(stream_of("a", "b")))
    provider = site.provider(first_token_timeout=1.0, timeout=10.0)
    events = []
    async for event in provider.stream(request()):
        events.append(event)
        if len(events) == 1:
            await asyncio.sleep(1.2)  # the consumer's time is not the server's
    await provider.aclose()
    assert [e.type for e in events][-2:] == ["usage", "finish"]


# ----------------------------------------------------------------------------- config & keys


async def test_missing_key_names_the_variable(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(errors.AuthenticationError, match=KEY_ENV):
        await chat(site.provider(), request())
    assert site.requests() == []


async def test_key_never_in_reprs_urls_or_logs(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.json_body(
            error_body("Incorrect API key provided: sk-test-***cdef.", code="invalid_api_key"),
            status=401,
        ),
    )
    provider = site.provider()
    with pytest.raises(errors.AuthenticationError) as info:
        await provider.chat(request())
    assert KEY not in repr(provider) and KEY not in repr(provider.settings)
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    assert KEY not in site.requests()[-1].target
    await provider.aclose()
    captured = capsys.readouterr()
    assert KEY not in captured.out + captured.err


async def test_local_server_needs_no_key(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-openai-key-must-not-leak")
    site.expect("POST", "/chat/completions", FakeResponse.json_body(completion({"content": "hi"})))
    provider = OpenAIProvider(
        ProviderConfig(
            name="local",
            type="openai",
            options={"base_url": site.base_url, "api_key_required": False},
        )
    )
    assert (await chat(provider, request(model="qwen2.5"))).text == "hi"
    assert "authorization" not in site.requests()[-1].headers


async def test_local_server_with_an_optional_key(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.expect("POST", "/chat/completions", FakeResponse.json_body(completion({"content": "hi"})))
    provider = site.provider(api_key_required=False)
    await chat(provider, request())
    assert site.requests()[-1].headers["authorization"] == f"Bearer {KEY}"
    monkeypatch.delenv(KEY_ENV)
    await chat(site.provider(api_key_required=False), request())
    assert "authorization" not in site.requests()[-1].headers


@pytest.mark.parametrize(
    ("preset", "base_url", "key_env", "required"),
    [
        (None, "https://api.openai.com/v1", "OPENAI_API_KEY", True),
        ("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY", True),
        ("together", "https://api.together.xyz/v1", "TOGETHER_API_KEY", True),
        ("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY", True),
        ("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY", True),
        ("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY", True),
        ("vllm", "http://localhost:8000/v1", None, False),
        ("lmstudio", "http://localhost:1234/v1", None, False),
        ("llamacpp", "http://localhost:8080/v1", None, False),
    ],
)
def test_presets(preset: str | None, base_url: str, key_env: str | None, required: bool) -> None:
    options = {"preset": preset} if preset else {}
    provider = OpenAIProvider(ProviderConfig(name="x", type="openai", options=options))
    assert provider.settings.base_url == base_url
    assert provider.settings.api_key_env == key_env
    assert provider.settings.api_key_required is required


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, "openai"),  # OpenAI's own API
        ({"base_url": "https://api.openai.com/v1"}, "openai"),
        ({"base_url": "https://api.groq.com/openai/v1"}, "groq"),  # by its API host
        ({"base_url": "https://api.deepseek.com"}, "deepseek"),
        ({"preset": "groq", "base_url": "https://proxy.example/v1"}, "groq"),
        ({"preset": "openai", "base_url": "https://proxy.example/v1"}, "openai"),
        ({"base_url": "https://proxy.example/v1"}, None),  # a custom server
        ({"base_url": "http://localhost:8000/v1"}, None),  # local: only when named
        ({"preset": "vllm"}, "vllm"),
    ],
)
def test_each_instance_names_the_preset_that_prices_it(
    options: dict[str, str], expected: str | None
) -> None:
    provider = OpenAIProvider(ProviderConfig(name="x", type="openai", options=options))
    assert provider.price_preset == expected


def test_explicit_keys_win_over_the_preset() -> None:
    provider = OpenAIProvider(
        ProviderConfig(
            name="x",
            type="openai",
            options={
                "preset": "groq",
                "base_url": "https://proxy.example/v1/",
                "api_key_env": "MY_KEY",
            },
        )
    )
    assert provider.settings.base_url == "https://proxy.example/v1"
    assert provider.settings.api_key_env == "MY_KEY"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"presett": "groq"}, "did you mean 'preset'"),
        ({"preset": "acme"}, "preset"),
        ({"organisation": "o"}, "did you mean 'organization'"),
        ({"embedding_batch_size": 0}, "embedding_batch_size"),
        ({"api_key_required": "no"}, "api_key_required"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], match: str) -> None:
    with pytest.raises(errors.ConfigError, match=match):
        OpenAIProvider(
            ProviderConfig(
                name="x", type="openai", options=options, where="[providers.x] in ./llmkernel.toml"
            )
        )


def test_plugin_serves_only_its_type() -> None:
    config = ProviderConfig(name="a", type="anthropic")
    assert llmkernel_openai.plugin.provide_chat(config=config) is None
    made = llmkernel_openai.plugin.provide_chat(config=ProviderConfig(name="g", type="openai"))
    assert isinstance(made, OpenAIProvider) and made.name == "g"


async def test_one_pooled_client_reused_and_closed(site: Site) -> None:
    site.expect("POST", "/chat/completions", FakeResponse.json_body(completion({"content": "x"})))
    provider = site.provider()
    await provider.chat(request())
    client = provider._client
    await provider.chat(request())
    assert provider._client is client and client is not None
    await provider.aclose()
    assert client.is_closed and provider._client is None


# ----------------------------------------------------------------------------- embeddings


def embedding_answer(
    vectors: list[Any], *, tokens: int, order: list[int] | None = None
) -> dict[str, Any]:
    order = order if order is not None else list(range(len(vectors)))
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": vectors[i]} for i in order],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


async def test_embeddings_float_in_input_order(site: Site) -> None:
    site.expect(
        "POST",
        "/embeddings",
        FakeResponse.json_body(
            embedding_answer([[0.5, -1.0], [0.25, 2.0]], tokens=6, order=[1, 0])
        ),
    )
    provider = site.provider()
    result = await provider.embed(
        EmbeddingRequest(model="text-embedding-3-small", inputs=("a", "b"), dimensions=2)
    )
    await provider.aclose()
    assert result.vectors == [[0.5, -1.0], [0.25, 2.0]]
    assert result.usage == Usage(input_tokens=6)
    assert result.model == "text-embedding-3-small"
    assert site.body(path="/embeddings") == {
        "model": "text-embedding-3-small",
        "input": ["a", "b"],
        "dimensions": 2,
    }


async def test_embeddings_base64(site: Site) -> None:
    vectors = [[0.5, -0.25, 3.0], [1.0, 0.0, -2.5]]
    encoded = [base64.b64encode(struct.pack("<3f", *v)).decode() for v in vectors]
    site.expect("POST", "/embeddings", FakeResponse.json_body(embedding_answer(encoded, tokens=2)))
    provider = site.provider()
    result = await provider.embed(
        EmbeddingRequest(
            model="text-embedding-3-large", inputs=("x", "y"), options={"encoding_format": "base64"}
        )
    )
    await provider.aclose()
    assert result.vectors == vectors
    assert site.body(path="/embeddings")["encoding_format"] == "base64"


async def test_embeddings_are_batched(site: Site) -> None:
    def answer(req: Any) -> FakeResponse:
        inputs = req.json()["input"]
        return FakeResponse.json_body(
            embedding_answer([[float(len(s))] for s in inputs], tokens=len(inputs))
        )

    site.server.expect("POST", f"{site.prefix}/v1/embeddings", answer)  # type: ignore[arg-type]
    provider = site.provider(embedding_batch_size=2)
    texts = ("a", "bb", "ccc", "dddd", "eeeee")
    result = await provider.embed(EmbeddingRequest(model="text-embedding-3-small", inputs=texts))
    await provider.aclose()
    assert [r.json()["input"] for r in site.requests("/embeddings")] == [
        ["a", "bb"],
        ["ccc", "dddd"],
        ["eeeee"],
    ]
    assert result.vectors == [[1.0], [2.0], [3.0], [4.0], [5.0]]
    assert result.usage.input_tokens == 5


@pytest.mark.parametrize(
    ("answer", "what"),
    [
        (embedding_answer([[1.0]], tokens=1), "2 inputs but 1"),
        (embedding_answer([[1.0], "%%%"], tokens=1), "base64"),
        (embedding_answer([[1.0], ["x"]], tokens=1), "neither"),
        (
            {
                "object": "list",
                "data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [2.0]}],
            },
            "out of place",
        ),
        ({"nope": True}, "data"),
    ],
)
async def test_malformed_embeddings(site: Site, answer: Any, what: str) -> None:
    site.expect("POST", "/embeddings", FakeResponse.json_body(answer))
    provider = site.provider()
    with pytest.raises(errors.MalformedResponseError, match=what):
        await provider.embed(EmbeddingRequest(model="m", inputs=("a", "b")))
    await provider.aclose()


# ----------------------------------------------------------------------------- models


async def test_list_models_and_health(site: Site) -> None:
    site.expect(
        "GET",
        "/models",
        FakeResponse.json_body(
            {
                "object": "list",
                "data": [
                    {
                        "id": "gpt-4o-2024-08-06",
                        "object": "model",
                        "created": 1,
                        "owned_by": "system",
                    },
                    {"id": "my-finetune", "object": "model", "created": 2, "owned_by": "user-abc"},
                ],
            }
        ),
    )
    provider = site.provider(api_version="v1")
    models = await provider.list_models()
    assert [(m.id, m.owned_by, m.provider) for m in models] == [
        ("gpt-4o-2024-08-06", "system", "oai"),
        ("my-finetune", "user-abc", "oai"),
    ]
    caps = models[0].capabilities
    assert caps is not None and caps.context_window == 128_000
    assert models[1].capabilities is None
    health = await provider.health()
    assert health.ok and "2 models" in health.detail
    await provider.aclose()
    sent = site.requests("/models")[-1]
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.query == {"api-version": ["v1"]}


@pytest.mark.parametrize(
    "answer",
    [
        FakeResponse.json_body(error_body("Incorrect API key", code="invalid_api_key"), status=401),
        FakeResponse.json_body({"object": "list", "models": []}),
        FakeResponse.text_body("<html>", content_type="text/html"),
    ],
)
async def test_health_reports_failures_without_raising(site: Site, answer: FakeResponse) -> None:
    site.expect("GET", "/models", answer)
    provider = site.provider()
    health = await provider.health()
    await provider.aclose()
    assert not health.ok and health.detail
    assert KEY not in health.detail


async def test_health_without_key(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    health = await site.provider().health()
    assert not health.ok and KEY_ENV in health.detail


@pytest.mark.parametrize(
    ("model", "window", "reasoning", "images"),
    [
        ("gpt-4o", 128_000, False, True),
        ("gpt-4o-mini-2024-07-18", 128_000, False, True),
        ("gpt-4.1", 1_047_576, False, True),
        ("gpt-4.1-mini", 1_047_576, False, True),
        ("o3", 200_000, True, True),
        ("o3-mini", 200_000, True, False),
        ("o4-mini", 200_000, True, True),
        ("gpt-5", 400_000, True, True),
        ("gpt-5-mini-2025-08-07", 400_000, True, True),
        ("openai/gpt-4o", 128_000, False, True),
    ],
)
def test_capabilities(model: str, window: int, reasoning: bool, images: bool) -> None:
    caps = OpenAIProvider(ProviderConfig(name="x", type="openai")).capabilities(model)
    assert caps is not None
    assert (caps.context_window, caps.reasoning, caps.images, caps.tools, caps.json_schema) == (
        window,
        reasoning,
        images,
        True,
        True,
    )


def test_embedding_model_capabilities_and_unknown_models() -> None:
    provider = OpenAIProvider(ProviderConfig(name="x", type="openai"))
    caps = provider.capabilities("text-embedding-3-large")
    assert caps is not None and caps.embeddings and not caps.tools
    assert provider.capabilities("llama-3.3-70b") is None
    assert provider.capabilities("gpt-4") is None


def test_declared_models() -> None:
    openai = OpenAIProvider(
        ProviderConfig(name="x", type="openai", options={"models": ["ft:gpt-4o:me"]})
    )
    declared = openai.declared_models()
    assert declared[0] == "ft:gpt-4o:me"
    assert {"gpt-4o", "o3", "gpt-5-mini", "text-embedding-3-small"} <= set(declared)
    groq = OpenAIProvider(
        ProviderConfig(
            name="g",
            type="openai",
            options={"preset": "groq", "models": ["llama-3.3-70b-versatile"]},
        )
    )
    assert groq.declared_models() == ["llama-3.3-70b-versatile"]


# ----------------------------------------------------------------------------- kernel


async def test_named_instances_through_the_kernel(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROQ_TEST_KEY", "gsk-groq-SECRET")
    site.expect("POST", "/chat/completions", FakeResponse.sse(stream_of("Fast", " answer")))
    config = {
        "providers": {
            "groq": {
                "type": "openai",
                "preset": "groq",
                "base_url": site.base_url,
                "api_key_env": "GROQ_TEST_KEY",
            }
        },
        "retry": {"attempts": 1},
    }
    async with Kernel.from_config(
        config, plugins=[llmkernel_openai.plugin], entry_points=False
    ) as kernel:
        handle = kernel.astream(
            model="groq/llama-3.3-70b-versatile",
            messages=[{"role": "user", "content": "hi"}],
            response_format={"type": "json_object"},
        )
        texts = [e.text async for e in handle if e.type == "text"]
    assert texts == ["Fast", " answer"]
    assert handle.response is not None and handle.response.provider == "groq"
    assert site.requests()[-1].headers["authorization"] == "Bearer gsk-groq-SECRET"
    assert site.body()["model"] == "llama-3.3-70b-versatile"


async def test_refusal_reaches_the_kernel_response(site: Site) -> None:
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.sse(
            [
                chunk({"role": "assistant", "refusal": "No."}),
                chunk(finish="stop"),
                chunk(empty=True, usage=usage_json(1, 1)),
                DONE,
            ]
        ),
    )
    config = {
        "providers": {"p": {"type": "openai", "base_url": site.base_url, "api_key_env": KEY_ENV}},
        "retry": {"attempts": 1},
    }
    async with Kernel.from_config(
        config, plugins=[llmkernel_openai.plugin], entry_points=False
    ) as kernel:
        handle = kernel.astream(model="p/gpt-4o", messages="hi")
        async for _ in handle:
            pass
    assert handle.response is not None and handle.response.refusal == "No."


async def test_azure_style_key_header_and_api_version(site: Site) -> None:
    site.expect("POST", "/chat/completions", FakeResponse.json_body(completion({"content": "x"})))
    provider = site.provider(api_key_header="api-key", api_version="2024-10-21")
    await chat(provider, request())
    sent = site.requests()[-1]
    assert sent.headers["api-key"] == KEY
    assert "authorization" not in sent.headers
    assert sent.query == {"api-version": ["2024-10-21"]}
    assert KEY not in sent.target


# ----------------------------------------------------------------------------- issue 8 wire details


async def test_openai_itself_gets_max_completion_tokens_for_every_model(site: Site) -> None:
    site.expect("POST", "/chat/completions", FakeResponse.json_body(completion({"content": "x"})))
    # preset "openai" (OpenAI's own API) pointed at the fake server
    await chat(site.provider(preset="openai"), request(model="gpt-4o", max_tokens=50))
    body = site.body()
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body


def test_max_tokens_field_defaults() -> None:
    from llmkernel_openai.settings import OpenAISettings

    assert OpenAISettings().resolved().max_tokens_field == "max_completion_tokens"
    assert (
        OpenAISettings(base_url="https://api.openai.com/v1").resolved().max_tokens_field
        == "max_completion_tokens"
    )
    assert OpenAISettings(preset="groq").resolved().max_tokens_field is None
    assert OpenAISettings(base_url="http://localhost:8000/v1").resolved().max_tokens_field is None
    explicit = OpenAISettings(preset="vllm", max_tokens_field="max_completion_tokens")
    assert explicit.resolved().max_tokens_field == "max_completion_tokens"


async def test_compatible_servers_keep_max_tokens(site: Site) -> None:
    site.expect("POST", "/chat/completions", FakeResponse.json_body(completion({"content": "x"})))
    await chat(site.provider(preset="vllm"), request(model="llama-3.3-70b", max_tokens=50))
    body = site.body()
    assert body["max_tokens"] == 50 and "max_completion_tokens" not in body


async def test_developer_message_stays_developer(site: Site) -> None:
    site.expect("POST", "/chat/completions", FakeResponse.json_body(completion({"content": "x"})))
    developer = Message(role="developer", content=(TextPart(text="Answer tersely."),))  # type: ignore[arg-type]
    await chat(site.provider(), request(developer, Message.user("hi")))
    assert site.body()["messages"][0] == {"role": "developer", "content": "Answer tersely."}


async def test_headers_on_chat_and_embeddings(site: Site) -> None:
    limits = {"x-ratelimit-remaining-requests": "41", "x-ratelimit-reset-tokens": "1s"}
    site.expect(
        "POST",
        "/chat/completions",
        FakeResponse.json_body(completion({"content": "x"}), headers=limits),
    )
    response = await chat(site.provider(), request())
    assert response.headers["x-ratelimit-remaining-requests"] == "41"
    from llmkernel_http import parse_ratelimit_headers

    assert parse_ratelimit_headers(response.headers).tokens_reset == 1.0


async def test_a_subclass_changes_url_auth_and_errors(site: Site) -> None:
    """The hooks an OpenAI-compatible service with its own URLs and auth (Azure
    OpenAI) overrides: base_url, path, auth_headers, query_params, error mapping."""

    class Deployments(OpenAIProvider):
        def path(self, operation: Any, model: str) -> str:
            if operation == "models":
                return "/models"
            suffix = "/chat/completions" if operation == "chat" else "/embeddings"
            return f"/deployments/{model}{suffix}"

        def auth_headers(self, key: str) -> dict[str, str]:
            return {"api-key": key}

        def query_params(self) -> dict[str, str]:
            return {"api-version": "2024-10-21"}

        def error_for_response(self, response: Any, body: bytes, model: str) -> Any:
            error = super().error_for_response(response, body, model)
            error.message = f"deployment {model!r}: {error.message}"
            error.args = (error.message,)
            return error

    site.expect(
        "POST",
        "/deployments/my-gpt/chat/completions",
        FakeResponse.json_body(completion({"content": "from the deployment"})),
        FakeResponse.json_body({"error": {"message": "no quota"}}, status=404),
    )
    options = {"base_url": site.base_url, "api_key_env": KEY_ENV}
    provider = Deployments(ProviderConfig(name="az", type="azure", options=options))
    try:
        response = await provider.chat(request(model="my-gpt"))
        with pytest.raises(errors.ModelNotFoundError, match="deployment 'my-gpt'"):
            await provider.chat(request(model="my-gpt"))
    finally:
        await provider.aclose()
    sent = site.requests("/deployments/my-gpt/chat/completions")[0]
    assert response.text == "from the deployment"
    assert sent.headers["api-key"] == KEY and "authorization" not in sent.headers
    assert sent.query == {"api-version": ["2024-10-21"]}
