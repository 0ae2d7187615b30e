"""``/v1/messages`` and ``/v1/messages/count_tokens`` with the official ``anthropic``
SDK, unchanged: over the mock and over fake Anthropic, OpenAI and Gemini upstreams;
the models in both shapes; the Chat Completions fields only some providers take."""

from __future__ import annotations

import json
import time
from typing import Any

import anthropic
import httpx
import openai
import pytest

from llmkernel_http.testing.fake_server import FakeResponse, Pause

from .apis_wire import (
    CLAUDE,
    GEMINI,
    Upstreams,
    chat_chunk,
    chat_sse,
    claude,
    claude_answer,
    claude_event,
    claude_text_start,
    events_of,
    oai,
    stream_raw,
)
from .conftest import UPSTREAM_KEY, Gateway
from .test_lifecycle import CountingPieces, wait_until_steady

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
HI = [{"role": "user", "content": "hi claude"}]


def test_a_plain_answer_with_x_api_key_or_bearer(apis: Gateway, api_keys: dict[str, str]) -> None:
    raw = claude(apis, api_keys["alice"]).messages.with_raw_response.create(
        model="mock/echo", max_tokens=100, messages=HI
    )
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_")
    assert [(b.type, b.text) for b in message.content] == [("text", "hi claude")]  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens == 2
    assert message.usage.cache_read_input_tokens == 0
    assert raw.headers["request-id"]
    bearer = httpx.post(
        f"{apis.url}/v1/messages",
        headers={"authorization": f"Bearer {api_keys['alice']}"},
        json={"model": "mock/echo", "max_tokens": 10, "messages": HI},
    )
    assert bearer.status_code == 200 and bearer.json()["content"][0]["text"] == "hi claude"


def test_every_stream_event_in_order(apis: Gateway, api_keys: dict[str, str]) -> None:
    response = stream_raw(
        apis,
        "/v1/messages",
        api_keys["alice"],
        {
            "model": "mock/chat",
            "max_tokens": 4000,
            "messages": HI,
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "stream": True,
        },
    )
    assert response.status_code == 200
    events = events_of(response.text)
    assert all(data["type"] == name for name, data in events)

    def shape(name: str, data: dict[str, Any]) -> str:
        if name == "content_block_start":
            return f"start:{data['content_block']['type']}"
        if name == "content_block_delta":
            return f"delta:{data['delta']['type']}"
        return name

    shapes = [shape(n, d) for n, d in events]
    collapsed = [s for i, s in enumerate(shapes) if i == 0 or shapes[i - 1] != s]
    assert collapsed == [
        "message_start",
        "ping",
        "start:thinking",
        "delta:thinking_delta",
        "delta:signature_delta",
        "content_block_stop",
        "start:text",
        "delta:text_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert [d["index"] for n, d in events if n == "content_block_start"] == [0, 1]
    delta = next(d for n, d in events if n == "message_delta")
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"]["output_tokens"] > 0 and delta["usage"]["input_tokens"] > 0
    # the SDK assembles the same message
    with claude(apis, api_keys["alice"]).messages.stream(
        model="mock/chat",
        max_tokens=4000,
        messages=HI,
        thinking={"type": "enabled", "budget_tokens": 2048},
    ) as stream:
        final = stream.get_final_message()
    thinking, text = final.content
    assert thinking.type == "thinking" and thinking.signature  # type: ignore[union-attr]
    assert text.type == "text" and text.text  # type: ignore[union-attr]


def test_tools_over_two_turns(apis: Gateway, api_keys: dict[str, str]) -> None:
    client = claude(apis, api_keys["alice"])
    question = {"role": "user", "content": "Weather in Paris?"}
    first = client.messages.create(
        model="mock/chat", max_tokens=200, messages=[question], tools=[WEATHER]
    )
    assert first.stop_reason == "tool_use"
    (use,) = first.content
    assert use.type == "tool_use" and use.name == "get_weather"  # type: ignore[union-attr]
    second = client.messages.create(
        model="mock/chat",
        max_tokens=200,
        tools=[WEATHER],
        messages=[
            question,
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": use.id, "content": "18C"}  # type: ignore[union-attr]
                ],
            },
        ],
    )
    assert second.content[0].text == "The tool returned: 18C"  # type: ignore[union-attr]
    with client.messages.stream(
        model="mock/chat", max_tokens=200, messages=[question], tools=[WEATHER]
    ) as stream:
        kinds = [e.type for e in stream]
        streamed = stream.get_final_message()
    assert "input_json" in kinds
    assert streamed.content[0].type == "tool_use"
    assert streamed.content[0].input == use.input  # type: ignore[union-attr]


def test_over_anthropic_cache_control_betas_and_cache_usage_go_through(
    apis: Gateway, api_keys: dict[str, str], upstreams: Upstreams
) -> None:
    upstreams.claude.answer(
        claude_answer(
            [{"type": "text", "text": "cached"}],
            usage={
                "input_tokens": 5,
                "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 20,
                "output_tokens": 3,
            },
        )
    )
    client = claude(
        apis, api_keys["alice"], **{"anthropic-beta": "interleaved-thinking-2025-05-14"}
    )
    message = client.messages.create(
        model=f"claude/{CLAUDE}",
        max_tokens=50,
        system=[
            {
                "type": "text",
                "text": "A long system prompt.",
                "cache_control": {"type": "ephemeral"},
            }
        ],
        messages=HI,
        metadata={"user_id": "u-1"},
        extra_body={"top_k": 5},  # an older API field the current SDK no longer has
    )
    assert message.content[0].text == "cached"  # type: ignore[union-attr]
    assert (
        message.usage.input_tokens,
        message.usage.cache_read_input_tokens,
        message.usage.cache_creation_input_tokens,
    ) == (5, 100, 20)
    sent = upstreams.claude.server.requests[-1]
    body = sent.json()
    assert body["system"] == [
        {"type": "text", "text": "A long system prompt.", "cache_control": {"type": "ephemeral"}}
    ]
    assert body["top_k"] == 5 and body["metadata"] == {"user_id": "u-1"}
    assert sent.headers["anthropic-beta"] == (
        "prompt-caching-2024-07-31,interleaved-thinking-2025-05-14"
    )
    assert sent.headers["x-api-key"] == UPSTREAM_KEY
    assert api_keys["alice"] not in sent.body.decode()


def test_anthropic_only_fields_are_refused_for_other_providers(
    apis: Gateway, api_keys: dict[str, str]
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude(apis, api_keys["alice"]).messages.create(
            model="oa/gpt-4o-mini", max_tokens=10, messages=HI, extra_body={"top_k": 3}
        )
    error = caught.value.body["error"]  # type: ignore[index]
    assert error["type"] == "invalid_request_error"
    assert "top_k" in error["message"] and "'openai'" in error["message"]


def test_streamed_over_an_openai_upstream(
    apis: Gateway, api_keys: dict[str, str], upstreams: Upstreams
) -> None:
    upstreams.openai.answer(
        FakeResponse.sse(
            chat_sse(
                chat_chunk({"role": "assistant", "content": "Checking."}),
                chat_chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_9",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"city":'},
                            }
                        ]
                    }
                ),
                chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
                chat_chunk({}, "tool_calls"),
            )
        )
    )
    with claude(apis, api_keys["alice"]).messages.stream(
        model="oa/gpt-4o-mini", max_tokens=64, messages=HI, tools=[WEATHER]
    ) as stream:
        final = stream.get_final_message()
    text, use = final.content
    assert text.text == "Checking."  # type: ignore[union-attr]
    assert (use.type, use.id, use.input) == ("tool_use", "call_9", {"city": "Oslo"})  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use"
    body = upstreams.openai.server.requests[-1].json()
    assert body["tools"][0]["function"]["name"] == "get_weather"
    assert body["max_tokens"] == 64


def test_count_tokens_exact_where_the_provider_counts_and_marked_elsewhere(
    apis: Gateway, api_keys: dict[str, str], upstreams: Upstreams
) -> None:
    client = claude(apis, api_keys["alice"])
    upstreams.claude.answer(FakeResponse.json_body({"input_tokens": 321}))
    raw = client.messages.with_raw_response.count_tokens(
        model=f"claude/{CLAUDE}", messages=HI, system="Be brief.", tools=[WEATHER]
    )
    assert raw.parse().input_tokens == 321
    assert raw.headers["x-llmkernel-token-count"] == "exact"
    sent = upstreams.claude.server.requests[-1]
    assert sent.path == "/v1/messages/count_tokens"
    assert sorted(sent.json()) == ["messages", "model", "system", "tools"]

    upstreams.gemini.answer(FakeResponse.json_body({"totalTokens": 77}))
    raw = client.messages.with_raw_response.count_tokens(model=f"gem/{GEMINI}", messages=HI)
    assert raw.parse().input_tokens == 77
    assert raw.headers["x-llmkernel-token-count"] == "exact"
    assert upstreams.gemini.server.requests[-1].path.endswith(":countTokens")

    # no counting endpoint and no tokenizer files here: the kernel's estimate, marked
    for model in ("mock/echo", "oa/gpt-4o-mini"):
        raw = client.messages.with_raw_response.count_tokens(model=model, messages=HI)
        assert raw.parse().input_tokens > 0
        assert raw.headers["x-llmkernel-token-count"] == "estimate", model
        assert raw.headers["x-llmkernel-token-method"].startswith("estimate")

    # the provider's endpoint failing is an estimate too, never an error or a silent guess
    upstreams.claude.answer(FakeResponse.json_body({"type": "error"}, status=500))
    raw = client.messages.with_raw_response.count_tokens(model=f"claude/{CLAUDE}", messages=HI)
    assert raw.headers["x-llmkernel-token-count"] == "estimate"


@pytest.mark.parametrize(
    ("body", "key", "status", "kind"),
    [
        (
            {"model": "mock/echo", "max_tokens": 5, "messages": HI},
            None,
            401,
            "authentication_error",
        ),
        (
            {"model": "mock/echo", "max_tokens": 5, "messages": HI},
            "lk-wrong",
            401,
            "authentication_error",
        ),
        (
            {"model": "oa/gpt-4o-mini", "max_tokens": 5, "messages": HI},
            "mock-only",
            403,
            "permission_error",
        ),
        ({"model": "mock/echo", "messages": HI}, "alice", 400, "invalid_request_error"),
        (
            {"model": "mock/echo", "max_tokens": 5, "messages": HI, "bogus": 1},
            "alice",
            400,
            "invalid_request_error",
        ),
        (
            {"model": "nowhere/x", "max_tokens": 5, "messages": HI},
            "alice",
            400,
            "invalid_request_error",
        ),
    ],
)
def test_errors_in_anthropics_shape(
    apis: Gateway,
    api_keys: dict[str, str],
    body: dict[str, Any],
    key: str | None,
    status: int,
    kind: str,
) -> None:
    secret = api_keys.get(key, key) if key else None
    headers = {"x-api-key": secret} if secret else {}
    response = httpx.post(f"{apis.url}/v1/messages", headers=headers, json=body, timeout=30)
    assert response.status_code == status
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == kind
    assert error["error"]["message"] and error["request_id"]


def test_upstream_overload_is_a_529_overloaded_error(
    apis: Gateway, api_keys: dict[str, str], upstreams: Upstreams
) -> None:
    upstreams.claude.answer(
        FakeResponse.json_body(
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            status=529,
        )
    )
    with pytest.raises(anthropic.APIStatusError) as caught:
        claude(apis, api_keys["alice"]).messages.create(
            model=f"claude/{CLAUDE}", max_tokens=5, messages=HI
        )
    assert caught.value.status_code == 529
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def test_a_failure_after_the_first_event_ends_with_an_error_event(
    apis: Gateway, api_keys: dict[str, str], upstreams: Upstreams
) -> None:
    upstreams.claude.answer(
        FakeResponse.sse(
            [
                *claude_text_start(),
                claude_event(
                    "content_block_delta",
                    {"index": 0, "delta": {"type": "text_delta", "text": "partial"}},
                ),
                claude_event(
                    "error", {"error": {"type": "overloaded_error", "message": "Overloaded"}}
                ),
            ]
        )
    )
    response = stream_raw(
        apis,
        "/v1/messages",
        api_keys["alice"],
        {"model": f"claude/{CLAUDE}", "max_tokens": 20, "messages": HI, "stream": True},
    )
    names = [name for name, _ in events_of(response.text)]
    assert names[-1] == "error" and "message_stop" not in names
    assert "content_block_delta" in names
    error = events_of(response.text)[-1][1]
    assert error["error"]["type"] == "overloaded_error"
    stream = claude(apis, api_keys["alice"]).messages.stream(
        model=f"claude/{CLAUDE}", max_tokens=20, messages=HI
    )
    with pytest.raises(anthropic.APIStatusError), stream as events:  # the SDK raises it
        for _ in events:
            pass


def slow_claude(pieces: int, pause: float) -> CountingPieces:
    items: list[Any] = [
        *claude_text_start(),
    ]
    for i in range(pieces):
        items.append(
            claude_event(
                "content_block_delta",
                {"index": 0, "delta": {"type": "text_delta", "text": f"w{i} "}},
            )
        )
        items.append(Pause(pause))
    items.append(claude_event("message_stop", {}))
    return CountingPieces(items)


@pytest.mark.parametrize("api", ["messages", "responses"])
def test_a_client_that_disconnects_cancels_the_upstream(
    apis: Gateway, api_keys: dict[str, str], upstreams: Upstreams, api: str
) -> None:
    pieces = slow_claude(100, 0.1)  # ten seconds if nobody stops it
    upstreams.claude.answer(
        FakeResponse(status=200, headers={"content-type": "text/event-stream"}, pieces=pieces)
    )
    body: dict[str, Any] = {"model": f"claude/{CLAUDE}", "stream": True}
    body.update({"max_tokens": 50, "messages": HI} if api == "messages" else {"input": "hi"})
    with httpx.stream(
        "POST",
        f"{apis.url}/v1/{api}",
        json=body,
        timeout=30,
        headers={"x-api-key": api_keys["alice"]},
    ) as response:
        seen = [line for _, line in zip(range(24), response.iter_lines(), strict=False)]
    assert any("w0" in line for line in seen)
    sent = wait_until_steady(pieces)
    assert not pieces.finished
    assert sent < 100, f"the upstream kept streaming after the client left ({sent} pieces)"
    deadline = time.monotonic() + 5
    while '"status": 499' not in apis.log and time.monotonic() < deadline:
        time.sleep(0.1)
    assert f'"route": "{api}_stream", "status": 499' in apis.log


def test_a_quiet_stream_pings(apis: Gateway, api_keys: dict[str, str]) -> None:
    # this mock sends a word every 0.5 s; the gateway pings after 0.2 s of silence
    response = stream_raw(
        apis,
        "/v1/messages",
        api_keys["alice"],
        {"model": "slow/chat", "max_tokens": 3, "messages": HI, "stream": True},
    )
    names = [name for name, _ in events_of(response.text)]
    assert names[:2] == ["message_start", "ping"]
    first_delta = names.index("content_block_delta")
    assert "ping" in names[first_delta:], names
    assert names[-1] == "message_stop"


def test_models_in_both_shapes(apis: Gateway, api_keys: dict[str, str]) -> None:
    listed = claude(apis, api_keys["mock-only"]).models.list(limit=2)
    page = list(listed)  # the SDK follows has_more / last_id
    assert [m.id for m in page] == ["mock/echo", "mock/chat", "mock/embed"]
    assert all(m.type == "model" for m in page)
    one = claude(apis, api_keys["mock-only"]).models.retrieve("mock/echo")
    assert (one.id, one.type) == ("mock/echo", "model")
    openai_list = oai(apis, api_keys["mock-only"]).models.list()
    assert openai_list.data[0].object == "model"
    assert oai(apis, api_keys["mock-only"]).models.retrieve("mock/echo").owned_by == "mock"
    with pytest.raises(openai.NotFoundError):
        oai(apis, api_keys["mock-only"]).models.retrieve("oa/gpt-4o-mini")  # not this key's


def test_a_session_stays_on_one_deployment(apis: Gateway, api_keys: dict[str, str]) -> None:
    def served(session: str | None) -> str:
        headers = {"x-api-key": api_keys["alice"]}
        if session:
            headers["x-claude-code-session-id"] = session
        response = httpx.post(
            f"{apis.url}/v1/messages",
            headers=headers,
            timeout=30,
            json={"model": "pair", "max_tokens": 5, "messages": HI},
        )
        assert response.status_code == 200
        return response.headers["x-llmkernel-provider"]

    # round-robin spreads turns without a session...
    assert len({served(None) for _ in range(4)}) == 2
    # ...and keeps each session on the deployment that answered its first turn
    for session in ("s-1", "s-2", "s-3"):
        first = served(session)
        assert {served(session) for _ in range(4)} == {first}


def test_chat_completions_fields_only_openai_takes(
    apis: Gateway, api_keys: dict[str, str], upstreams: Upstreams
) -> None:
    client = oai(apis, api_keys["alice"])
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="mock/echo", messages=HI, web_search_options={"search_context_size": "low"}
        )
    assert caught.value.body["param"] == "web_search_options"  # type: ignore[index]
    assert "'mock'" in caught.value.message
    upstreams.openai.answer(
        FakeResponse.json_body(
            {
                "id": "c",
                "object": "chat.completion",
                "created": 1,
                "model": "gpt-4o-mini",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "searched"},
                    }
                ],
            }
        )
    )
    answer = client.chat.completions.create(
        model="oa/gpt-4o-mini",
        messages=HI,
        modalities=["text"],
        web_search_options={"search_context_size": "low"},
    )
    assert answer.choices[0].message.content == "searched"
    body = upstreams.openai.server.requests[-1].json()
    assert body["web_search_options"] == {"search_context_size": "low"}
    assert body["modalities"] == ["text"]


def test_legacy_functions_are_tools(apis: Gateway, api_keys: dict[str, str]) -> None:
    functions = [{"name": "get_weather", "parameters": WEATHER["input_schema"]}]
    response = httpx.post(
        f"{apis.url}/v1/chat/completions",
        headers={"authorization": f"Bearer {api_keys['alice']}"},
        json={
            "model": "mock/chat",
            "messages": HI,
            "functions": functions,
            "function_call": {"name": "get_weather"},
        },
    ).json()
    choice = response["choices"][0]
    assert choice["finish_reason"] == "function_call"
    assert choice["message"]["function_call"]["name"] == "get_weather"
    assert "city" in json.loads(choice["message"]["function_call"]["arguments"])
    assert "tool_calls" not in choice["message"]
