"""``/v1/responses`` with the official ``openai`` SDK, unchanged: over the mock and
over fake OpenAI (Chat Completions and Responses), Anthropic and Gemini upstreams."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from llmkernel_http.testing.fake_server import FakeResponse

from .apis_wire import (
    CLAUDE,
    Upstreams,
    chat_chunk,
    chat_sse,
    claude_answer,
    events_of,
    gemini_answer,
    oai,
)
from .conftest import UPSTREAM_KEY, Gateway

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def post(gateway: Gateway, key: str | None, body: dict[str, Any]) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{gateway.url}/v1/responses", json=body, headers=headers, timeout=30)


def test_a_plain_answer(apis: Gateway, api_keys: dict[str, str]) -> None:
    raw = oai(apis, api_keys["alice"]).responses.with_raw_response.create(
        model="mock/echo", input="hello responses", metadata={"run": "1"}
    )
    response = raw.parse()
    assert response.id.startswith("resp_")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.output_text == "hello responses"
    assert response.model == "mock/echo"
    assert response.metadata == {"run": "1"}
    (message,) = response.output
    assert message.type == "message" and message.id.startswith("msg_")
    assert message.content[0].type == "output_text"
    usage = response.usage
    assert usage is not None
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens > 0
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0
    assert raw.headers["x-llmkernel-provider"] == "mock"


def test_every_stream_event_in_order(apis: Gateway, api_keys: dict[str, str]) -> None:
    client = oai(apis, api_keys["alice"])
    with client.responses.stream(
        model="mock/chat",
        input="think then answer",
        reasoning={"effort": "low", "summary": "auto"},
        include=["reasoning.encrypted_content"],
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert [e.sequence_number for e in events] == list(range(len(events)))

    def collapse(names: list[str]) -> list[str]:
        return [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]

    assert collapse(kinds) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    thinking = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
    assert final.output_text == text and text
    reasoning, message = final.output
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == thinking
    assert reasoning.encrypted_content  # the mock's signature, to send back
    assert message.type == "message"
    assert final.usage is not None and final.usage.output_tokens_details.reasoning_tokens > 0
    created = events[0]
    assert created.type == "response.created" and created.response.status == "in_progress"
    assert created.response.id == final.id


def test_tools_over_two_turns(apis: Gateway, api_keys: dict[str, str]) -> None:
    client = oai(apis, api_keys["alice"])
    first = client.responses.create(model="mock/chat", input="Weather in Paris?", tools=[WEATHER])
    (call,) = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert "city" in json.loads(call.arguments)
    assert call.call_id
    # turn two, stateless: the whole input with the call and its output
    second = client.responses.create(
        model="mock/chat",
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "18C and sunny"},
        ],
        tools=[WEATHER],
    )
    assert second.output_text == "The tool returned: 18C and sunny"
    # turn two again, from the stored first turn
    third = client.responses.create(
        model="mock/chat",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "rain"}],
        tools=[WEATHER],
    )
    assert third.output_text == "The tool returned: rain"
    assert third.previous_response_id == first.id


def test_a_streamed_tool_call(apis: Gateway, api_keys: dict[str, str]) -> None:
    with oai(apis, api_keys["alice"]).responses.stream(
        model="mock/chat", input="Weather?", tools=[WEATHER]
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert "response.function_call_arguments.delta" in kinds
    assert kinds[-3:] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert done.arguments == deltas == final.output[0].arguments  # type: ignore[union-attr]


def test_previous_response_id_continues_on_other_providers(
    apis: Gateway, api_keys: dict[str, str], upstreams: Upstreams
) -> None:
    client = oai(apis, api_keys["alice"])
    first = client.responses.create(
        model="mock/echo", input="my name is Ada", instructions="Be terse."
    )
    upstreams.claude.answer(claude_answer([{"type": "text", "text": "Hello Ada."}]))
    second = client.responses.create(
        model=f"claude/{CLAUDE}", previous_response_id=first.id, input="what is my name?"
    )
    assert second.output_text == "Hello Ada."
    sent = upstreams.claude.server.requests[-1].json()
    assert "system" not in sent  # instructions are not carried over
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][0]["content"][0]["text"] == "my name is Ada"
    assert sent["messages"][1]["content"][0]["text"] == "my name is Ada"  # the echo
    upstreams.gemini.answer(gemini_answer("Ada, twice."))
    third = client.responses.create(
        model="gem/gemini-2.5-flash", previous_response_id=second.id, input="again?"
    )
    assert third.output_text == "Ada, twice."
    contents = upstreams.gemini.server.requests[-1].json()["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user", "model", "user"]
    assert contents[3]["parts"][0]["text"] == "Hello Ada."


def test_stored_responses_belong_to_their_tenant(apis: Gateway, api_keys: dict[str, str]) -> None:
    alice, bob = oai(apis, api_keys["alice"]), oai(apis, api_keys["bob"])
    kept = alice.responses.create(model="mock/echo", input="secret plans")
    assert alice.responses.retrieve(kept.id).output_text == "secret plans"
    for attempt in (
        lambda: bob.responses.retrieve(kept.id),
        lambda: bob.responses.delete(kept.id),
        lambda: bob.responses.create(model="mock/echo", input="x", previous_response_id=kept.id),
    ):
        with pytest.raises(openai.NotFoundError):
            attempt()
    alice.responses.delete(kept.id)
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(kept.id)
    unstored = alice.responses.create(model="mock/echo", input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(unstored.id)
    missing = post(
        apis,
        api_keys["alice"],
        {"model": "mock/echo", "input": "x", "previous_response_id": "resp_nope"},
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["param"] == "previous_response_id"


def test_cut_by_max_output_tokens_is_incomplete(apis: Gateway, api_keys: dict[str, str]) -> None:
    client = oai(apis, api_keys["alice"])
    response = client.responses.create(model="mock/chat", input="go on", max_output_tokens=3)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    with client.responses.stream(model="mock/chat", input="go on", max_output_tokens=3) as stream:
        kinds = [e.type for e in stream]
    assert kinds[-1] == "response.incomplete"
    assert "response.completed" not in kinds


def test_over_a_chat_completions_upstream_with_usage_details(
    apis: Gateway, api_keys: dict[str, str], upstreams: Upstreams
) -> None:
    usage = {
        **chat_chunk({}),
        "choices": [],
        "usage": {
            "prompt_tokens": 30,
            "completion_tokens": 12,
            "prompt_tokens_details": {"cached_tokens": 10},
            "completion_tokens_details": {"reasoning_tokens": 4},
        },
    }
    upstreams.openai.answer(
        FakeResponse.sse(
            chat_sse(
                chat_chunk({"role": "assistant", "content": "up"}),
                chat_chunk({"content": "stream"}),
                chat_chunk({}, "stop"),
                usage,
            )
        )
    )
    with oai(apis, api_keys["alice"]).responses.stream(
        model="oa/gpt-4o-mini", input="hi", instructions="Be brief.", temperature=0.5
    ) as stream:
        final = stream.get_final_response()
    assert final.output_text == "upstream"
    assert final.usage is not None
    assert final.usage.input_tokens_details.cached_tokens == 10
    assert final.usage.output_tokens_details.reasoning_tokens == 4
    sent = upstreams.openai.server.requests[-1]
    body = sent.json()
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["temperature"] == 0.5 and body["stream"] is True
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_a_responses_deployment_goes_natively_to_openais_responses_endpoint(
    apis: Gateway, api_keys: dict[str, str], upstreams: Upstreams
) -> None:
    upstreams.native.answer(
        FakeResponse.json_body(
            {
                "id": "resp_upstream",
                "object": "response",
                "status": "completed",
                "model": "gpt-5-2025-08-07",
                "output": [
                    {"type": "reasoning", "id": "rs_u", "summary": [], "encrypted_content": "ENC"},
                    {
                        "type": "message",
                        "id": "msg_u",
                        "role": "assistant",
                        "status": "completed",
                        "content": [{"type": "output_text", "text": "native", "annotations": []}],
                    },
                ],
                "usage": {
                    "input_tokens": 5,
                    "output_tokens": 9,
                    "output_tokens_details": {"reasoning_tokens": 6},
                },
            }
        )
    )
    response = oai(apis, api_keys["alice"]).responses.create(
        model="native/gpt-5",
        input="hi",
        reasoning={"effort": "high"},
        include=["reasoning.encrypted_content"],
        prompt_cache_key="conv-1",
        parallel_tool_calls=False,
    )
    assert response.output_text == "native"
    assert response.output[0].encrypted_content == "rs_u:ENC"  # type: ignore[union-attr]
    assert response.usage is not None and response.usage.output_tokens_details.reasoning_tokens == 6
    sent = upstreams.native.server.requests[-1]
    assert sent.path == "/v1/responses"
    body = sent.json()
    assert body["store"] is False and body["reasoning"]["effort"] == "high"
    assert body["prompt_cache_key"] == "conv-1" and body["parallel_tool_calls"] is False


def test_openai_only_hints_are_not_sent_to_other_providers(
    apis: Gateway, api_keys: dict[str, str], upstreams: Upstreams
) -> None:
    upstreams.claude.answer(claude_answer([{"type": "text", "text": "ok"}]))
    response = oai(apis, api_keys["alice"]).responses.create(
        model=f"claude/{CLAUDE}", input="hi", prompt_cache_key="conv-1", parallel_tool_calls=False
    )
    assert response.output_text == "ok"
    sent = upstreams.claude.server.requests[-1].json()
    assert "prompt_cache_key" not in sent and "parallel_tool_calls" not in sent


def test_a_failure_after_the_first_event_ends_with_response_failed(
    apis: Gateway, api_keys: dict[str, str], upstreams: Upstreams
) -> None:
    upstreams.openai.answer(
        FakeResponse.sse(chat_sse(chat_chunk({"content": "partial"}), done=False), truncate=True)
    )
    with httpx.stream(
        "POST",
        f"{apis.url}/v1/responses",
        headers={"authorization": f"Bearer {api_keys['alice']}"},
        json={"model": "oa/gpt-4o-mini", "input": "hi", "stream": True},
        timeout=30,
    ) as raw:
        assert raw.status_code == 200
        body = raw.read().decode()
    events = events_of(body)
    names = [name for name, _ in events]
    assert names[-1] == "response.failed"
    assert not {"response.completed", "response.incomplete"} & set(names)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    failed = events[-1][1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    assert failed["output"][0]["content"][0]["text"] == "partial"


def test_errors_in_openais_shape(apis: Gateway, api_keys: dict[str, str]) -> None:
    assert post(apis, None, {"model": "mock/echo", "input": "x"}).status_code == 401
    bad = post(
        apis,
        api_keys["alice"],
        {"model": "mock/echo", "input": "x", "tools": [{"type": "web_search"}]},
    )
    assert bad.status_code == 400
    assert bad.json()["error"] == {
        "message": "tools[0] is a 'web_search' tool; only function tools are supported",
        "type": "invalid_request_error",
        "param": "tools[0].type",
        "code": None,
    }
    unknown = post(apis, api_keys["alice"], {"model": "mock/echo", "input": "x", "seed": 1})
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "seed"
    denied = post(apis, api_keys["mock-only"], {"model": "oa/gpt-4o-mini", "input": "x"})
    assert denied.status_code == 403
    with pytest.raises(openai.BadRequestError) as caught:
        oai(apis, api_keys["alice"]).responses.create(
            model="mock/echo", input=[{"type": "item_reference", "id": "x"}]
        )
    assert caught.value.body["param"] == "input[0].type"  # type: ignore[index]
