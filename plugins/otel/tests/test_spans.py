"""Spans of kernel calls by the GenAI conventions: names, kinds, attributes and
nesting for chat, stream, embed, fallback, failure and refusal; no content unless
asked; the conventions' version from OTEL_SEMCONV_STABILITY_OPT_IN."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from llmkernel import hookimpl
from llmkernel.errors import RateLimitError, RefusedError, ServerError
from llmkernel.testing.scripted import err, make_kernel

from .conftest import Otel

PRICES = {"a/m1": {"input": 1.0, "output": 2.0}, "b/m1": {"input": 1.0, "output": 2.0}}
SECRET_PROMPT = "the-secret-prompt-4711"


def test_a_chat_is_one_client_span_with_the_conventions_attributes(otel: Otel) -> None:
    with make_kernel(["one two three"], plugins=(otel.plugin,), prices=PRICES) as kernel:
        kernel.chat(
            "group",
            "hi",
            max_tokens=50,
            temperature=0.2,
            top_p=0.9,
            stop=["END"],
            metadata={"tenant": "acme", "key": "team-a"},
        )
    call = otel.span("chat group")
    assert call.kind is SpanKind.CLIENT
    assert call.parent is None  # no current span in the caller
    attributes = dict(call.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "scripted"
    assert attributes["gen_ai.request.model"] == "group"
    assert attributes["gen_ai.request.max_tokens"] == 50
    assert attributes["gen_ai.request.temperature"] == pytest.approx(0.2)
    assert attributes["gen_ai.request.top_p"] == pytest.approx(0.9)
    assert attributes["gen_ai.request.stop_sequences"] == ("END",)
    assert attributes["gen_ai.response.model"] == "m1"
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["gen_ai.usage.input_tokens"] == 10
    assert attributes["gen_ai.usage.output_tokens"] == 3
    assert attributes["llmkernel.cost"] == pytest.approx((10 * 1.0 + 3 * 2.0) / 1e6)
    assert attributes["llmkernel.cached"] is False
    assert attributes["llmkernel.attempts"] == 1
    assert attributes["llmkernel.tenant"] == "acme"
    assert attributes["llmkernel.key"] == "team-a"
    assert attributes["llmkernel.deployment"] == "a/m1"
    assert "gen_ai.request.stream" not in attributes
    assert call.status.status_code is StatusCode.UNSET
    (attempt,) = [s for s in otel.spans() if s.name == "attempt a/m1"]
    assert attempt.kind is SpanKind.INTERNAL
    assert attempt.parent is not None and attempt.parent.span_id == call.context.span_id
    assert attempt.context.trace_id == call.context.trace_id
    assert dict(attempt.attributes or {})["llmkernel.attempt.outcome"] == "ok"
    assert call.start_time <= attempt.start_time <= attempt.end_time <= call.end_time


def test_spans_nest_under_the_callers_current_span_sync_and_async(otel: Otel) -> None:
    tracer = otel.tracer_provider.get_tracer("app")
    with (
        make_kernel(["x"], plugins=(otel.plugin,)) as kernel,
        tracer.start_as_current_span("request handler") as outer,
    ):
        kernel.chat("a/m1", "hi")
    call = otel.span("chat a/m1")
    assert call.parent is not None and call.parent.span_id == outer.get_span_context().span_id
    assert call.context.trace_id == outer.get_span_context().trace_id

    async def main() -> int:
        async with make_kernel(["y"], plugins=(otel.plugin,)) as kernel:
            with tracer.start_as_current_span("async handler") as span:
                await kernel.achat("a/m1", "hi")
            return span.get_span_context().span_id

    outer_id = asyncio.run(main())
    (second,) = [s for s in otel.spans() if s.name == "chat a/m1" and s is not call]
    assert second.parent is not None and second.parent.span_id == outer_id


def test_a_stream_span_ends_with_the_stream_and_has_the_time_to_first_chunk(
    otel: Otel,
) -> None:
    with make_kernel([["one", " two", " three"]], plugins=(otel.plugin,)) as kernel:
        stream = kernel.stream("a/m1", "hi")
        events = []
        for event in stream:
            events.append(event.type)
            time.sleep(0.02)  # the caller reads slowly: the span lasts as long
        assert otel.spans()  # ended with the stream, before the kernel closes
    call = otel.span("chat a/m1")
    attributes = dict(call.attributes or {})
    assert attributes["gen_ai.request.stream"] is True
    ttfc = attributes["gen_ai.response.time_to_first_chunk"]
    assert 0 < ttfc < 0.02
    assert (call.end_time - call.start_time) / 1e9 >= 0.1  # five events read 20 ms apart
    assert attributes["gen_ai.usage.output_tokens"] == 3
    assert attributes["llmkernel.status"] == "ok"
    chunk = otel.metrics()["gen_ai.client.operation.time_to_first_chunk"]
    (point,) = chunk.data.data_points
    assert point.count == 1 and point.sum == pytest.approx(ttfc)


def test_a_stream_the_caller_stops_reading_is_abandoned_not_an_error(otel: Otel) -> None:
    with (
        make_kernel([["one", " two", " three"]], plugins=(otel.plugin,)) as kernel,
        kernel.stream("a/m1", "hi") as stream,
    ):
        for _ in stream:
            break
    call = otel.span("chat a/m1")
    assert dict(call.attributes or {})["llmkernel.status"] == "abandoned"
    assert call.status.status_code is StatusCode.UNSET
    assert "error.type" not in dict(call.attributes or {})


def test_embeddings_span(otel: Otel) -> None:
    with make_kernel(["unused"], plugins=(otel.plugin,)) as kernel:
        kernel.embed("a/m1", ["one", "two"], dimensions=8)
    call = otel.span("embeddings a/m1")
    attributes = dict(call.attributes or {})
    assert call.kind is SpanKind.CLIENT
    assert attributes["gen_ai.operation.name"] == "embeddings"
    assert attributes["gen_ai.embeddings.dimension.count"] == 8
    assert attributes["gen_ai.usage.input_tokens"] == 2
    assert "gen_ai.usage.output_tokens" not in attributes
    duration = otel.metrics()["gen_ai.client.operation.duration"]
    assert {p.attributes["gen_ai.operation.name"] for p in duration.data.data_points} == {
        "embeddings"
    }


def test_each_attempt_of_a_retry_and_a_fallback_is_a_child_span(otel: Otel) -> None:
    kernel = make_kernel(
        [err(ServerError), err(ServerError)],
        ["from b"],
        plugins=(otel.plugin,),
        retry={"attempts": 2, "initial_wait": 0.05, "max_wait": 0.05},
    )
    with kernel:
        response = kernel.chat("group", "hi")
    assert response.provider == "b"
    call = otel.span("chat group")
    attempts = sorted(
        (s for s in otel.spans() if s.name.startswith("attempt ")),
        key=lambda s: dict(s.attributes or {})["llmkernel.attempt.index"],
    )
    assert [s.name for s in attempts] == ["attempt a/m1", "attempt a/m1", "attempt b/m1"]
    rows = [dict(s.attributes or {}) for s in attempts]
    assert [r["llmkernel.attempt.outcome"] for r in rows] == ["error", "error", "ok"]
    assert [r["llmkernel.attempt.number"] for r in rows] == [1, 2, 1]
    assert [r.get("error.type") for r in rows] == ["server", "server", None]
    assert rows[1]["llmkernel.attempt.wait"] >= 0.04  # the backoff before the retry
    assert rows[0]["llmkernel.attempt.wait"] == 0
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert all(s.parent is not None and s.parent.span_id == call.context.span_id for s in attempts)
    attributes = dict(call.attributes or {})
    assert attributes["llmkernel.attempts"] == 3
    assert attributes["llmkernel.provider"] == "b"
    assert call.status.status_code is StatusCode.UNSET


def test_a_failed_call_has_status_error_and_error_type(otel: Otel) -> None:
    kernel = make_kernel([err(RateLimitError)], plugins=(otel.plugin,), retry={"attempts": 1})
    with kernel, pytest.raises(RateLimitError):
        kernel.chat("a/m1", "hi")
    call = otel.span("chat a/m1")
    assert call.status.status_code is StatusCode.ERROR
    assert "RateLimitError" in (call.status.description or "")
    attributes = dict(call.attributes or {})
    assert attributes["error.type"] == "rate_limit"
    assert attributes["llmkernel.status"] == "error"
    duration = otel.metrics()["gen_ai.client.operation.duration"]
    (point,) = duration.data.data_points
    assert point.attributes["error.type"] == "rate_limit"
    assert "gen_ai.client.token.usage" not in otel.metrics()  # no usage, no token metric


class RefusesA:
    """A gate that refuses every attempt on provider ``a`` (a budget would)."""

    __llmkernel_name__ = "refuses-a"

    @hookimpl
    def provide_gate(self) -> object:
        class Gate:
            async def acquire(self, ctx: object, attempt: Any) -> None:
                if attempt.candidate.provider == "a":
                    raise RefusedError("a is over its budget", kind="budget")

            def release(self, ctx: object, attempt: object, outcome: object) -> None:
                pass

        return Gate()


def test_an_attempt_a_gate_refuses_is_a_refused_span_and_the_next_candidate_answers(
    otel: Otel,
) -> None:
    with make_kernel(["unused"], ["from b"], plugins=(otel.plugin, RefusesA())) as kernel:
        assert kernel.chat("group", "hi").provider == "b"
    refused, answered = sorted(
        (s for s in otel.spans() if s.name.startswith("attempt")), key=lambda s: s.start_time
    )
    assert refused.name == "attempt a/m1" and answered.name == "attempt b/m1"
    assert dict(refused.attributes or {})["llmkernel.attempt.outcome"] == "refused"
    assert dict(refused.attributes or {})["error.type"] == "budget"
    assert dict(answered.attributes or {})["llmkernel.attempt.outcome"] == "ok"
    assert otel.span("chat group").status.status_code is StatusCode.UNSET


class Refuser:
    __llmkernel_name__ = "refuser"

    @hookimpl
    def on_request(self, ctx: object) -> None:
        raise RefusedError("over budget", kind="budget")


def test_a_refused_call(otel: Otel) -> None:
    kernel = make_kernel(["x"], plugins=(otel.plugin, Refuser()))
    with kernel, pytest.raises(RefusedError):
        kernel.chat("a/m1", "hi")
    call = otel.span("chat a/m1")
    attributes = dict(call.attributes or {})
    assert attributes["error.type"] == "budget"
    assert attributes["llmkernel.status"] == "refused"
    assert attributes["llmkernel.attempts"] == 0
    assert not [s for s in otel.spans() if s.name.startswith("attempt")]


def _everything(otel: Otel) -> str:
    """Every attribute of every span, as text."""
    return json.dumps(
        [{k: str(v) for k, v in (s.attributes or {}).items()} for s in otel.spans()]
        + [s.status.description or "" for s in otel.spans()]
    )


def test_no_content_is_recorded_by_default(otel: Otel) -> None:
    with make_kernel(["the-secret-answer"], plugins=(otel.plugin,)) as kernel:
        kernel.chat("a/m1", SECRET_PROMPT)
        for _ in kernel.stream("a/m1", SECRET_PROMPT):
            pass
    text = _everything(otel)
    assert SECRET_PROMPT not in text and "the-secret-answer" not in text
    assert "gen_ai.input.messages" not in text and "gen_ai.output.messages" not in text


def test_content_when_asked_follows_the_message_schemas(
    otel: Otel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "span_only")
    with make_kernel(["the answer"], plugins=(otel.plugin,)) as kernel:
        kernel.chat(
            "a/m1",
            [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": SECRET_PROMPT},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            ],
        )
    attributes = dict(otel.span("chat a/m1").attributes or {})
    sent = json.loads(str(attributes["gen_ai.input.messages"]))
    assert sent[0] == {"role": "system", "parts": [{"type": "text", "content": "be brief"}]}
    assert sent[1]["parts"] == [{"type": "text", "content": SECRET_PROMPT}]
    assert {
        "type": "tool_call",
        "id": "call_1",
        "name": "get_weather",
        "arguments": {"city": "Paris"},
    } in sent[2]["parts"]
    assert sent[3] == {
        "role": "tool",
        "parts": [{"type": "tool_call_response", "id": "call_1", "response": "18C"}],
    }
    answer = json.loads(str(attributes["gen_ai.output.messages"]))
    assert answer == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "the answer"}],
            "finish_reason": "stop",
        }
    ]


def test_the_plugin_setting_turns_content_on_and_off(
    otel: Otel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    kernel = make_kernel(["x"], plugins=(otel.plugin,), plugin={"otel": {"capture_content": False}})
    with kernel:
        kernel.chat("a/m1", SECRET_PROMPT)
    assert SECRET_PROMPT not in _everything(otel)


def test_latest_experimental_conventions_on_opt_in(
    otel: Otel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http,gen_ai_latest_experimental")
    with make_kernel(["one two"], plugins=(otel.plugin,)) as kernel:
        kernel.chat("a/m1", "hi")
        kernel.embed("a/m1", ["x"])
    names = set(otel.metrics())
    assert "gen_ai.client.inference.duration" in names
    assert "gen_ai.client.embeddings.duration" in names
    assert "gen_ai.client.inference.usage.input_tokens" in names
    assert "gen_ai.client.inference.operation.output_tokens" in names
    assert "gen_ai.client.token.usage" not in names
    assert "gen_ai.client.operation.duration" not in names
    counter = otel.metrics()["gen_ai.client.inference.usage.output_tokens"]
    (point,) = counter.data.data_points
    assert point.value == 2 and point.attributes["gen_ai.token.modality"] == "unknown"
