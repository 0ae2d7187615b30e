"""The ``traceparent`` an OpenAI-compatible upstream receives (``propagate``), the
metrics by the conventions (names, units, buckets, bounded attribute values), and
what the plugin does without an SDK: nothing."""

from __future__ import annotations

import json
import random
import string
import subprocess
import sys
import textwrap

import pytest
from opentelemetry.trace import SpanKind

from llmkernel import Kernel
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer
from llmkernel_otel import semconv

from .conftest import Otel

KEY_ENV = "OTEL_TEST_UPSTREAM_KEY"
KEY = "sk-otel-test-SECRET-987654321"


def completion(text: str) -> FakeResponse:
    return FakeResponse.json_body(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "local-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
        }
    )


def sse_stream(*texts: str) -> FakeResponse:
    chunks = [
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "local-model",
            "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}],
        }
        for t in texts
    ]
    chunks.append(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "local-model",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": len(texts), "total_tokens": 11},
        }
    )
    return FakeResponse.sse([*(f"data: {json.dumps(c)}\n\n" for c in chunks), "data: [DONE]\n\n"])


def local_kernel(server: FakeServer, otel: Otel, **otel_settings: object) -> Kernel:
    config = {
        "providers": {
            "local": {
                "type": "openai",
                "base_url": f"{server.url}/v1",
                "api_key_env": KEY_ENV,
                "models": ["local-model"],
            },
            "other": {
                "type": "openai",
                "base_url": f"{server.url}/v1",
                "api_key_env": KEY_ENV,
                "models": ["local-model"],
            },
        },
        "retry": {"attempts": 2, "initial_wait": 0, "max_wait": 0, "jitter": 0},
        "plugins": {"disabled": ["otel"]},
        "plugin": {"otel": otel_settings} if otel_settings else {},
    }
    return Kernel.from_config(config, plugins=[otel.plugin])


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    monkeypatch.setenv(KEY_ENV, KEY)
    with FakeServer() as fake:
        yield fake


def _parts(header: str) -> tuple[int, int]:
    version, trace_id, span_id, flags = header.split("-")
    assert version == "00" and int(flags, 16) & 1  # sampled
    return int(trace_id, 16), int(span_id, 16)


def test_each_attempt_sends_its_own_traceparent_to_a_provider_that_propagates(
    server: FakeServer, otel: Otel
) -> None:
    server.expect(
        "POST",
        "/v1/chat/completions",
        FakeResponse.json_body({"error": {"message": "busy"}}, status=503),
        completion("hello"),
    )
    with local_kernel(server, otel, propagate=["local"]) as kernel:
        kernel.chat("local/local-model", "hi")
    first, second = server.requests_to("/v1/chat/completions")
    attempts = sorted(
        (s for s in otel.spans() if s.name == "attempt local/local-model"),
        key=lambda s: s.start_time,
    )
    assert len(attempts) == 2
    call = otel.span("chat local/local-model")
    for request, span in zip((first, second), attempts, strict=True):
        trace_id, parent_id = _parts(request.headers["traceparent"])
        assert trace_id == call.context.trace_id
        assert parent_id == span.context.span_id  # the upstream's span nests under the attempt
        assert span.parent is not None and span.parent.span_id == call.context.span_id
    # the call's span, made live when the first attempt started, is whole at the end
    attributes = dict(call.attributes or {})
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["server.port"] == int(server.url.rsplit(":", 1)[1])
    assert attributes["gen_ai.usage.input_tokens"] == 9
    assert dict(attempts[0].attributes or {})["llmkernel.attempt.outcome"] == "error"
    # a provider not listed gets no traceparent, and nothing leaks between contexts
    server.expect("POST", "/v1/chat/completions", completion("again"))
    with local_kernel(server, otel, propagate=["local"]) as kernel:
        kernel.chat("other/local-model", "hi")
    assert "traceparent" not in server.requests_to("/v1/chat/completions")[-1].headers


def test_a_stream_propagates_too_and_its_span_ends_with_it(server: FakeServer, otel: Otel) -> None:
    server.expect("POST", "/v1/chat/completions", sse_stream("one", " two"))
    with local_kernel(server, otel, propagate=["*"]) as kernel:
        text = "".join(e.text for e in kernel.stream("local/local-model", "hi") if e.type == "text")
    assert text == "one two"
    (request,) = server.requests_to("/v1/chat/completions")
    _, parent_id = _parts(request.headers["traceparent"])
    (attempt,) = [s for s in otel.spans() if s.name.startswith("attempt")]
    assert parent_id == attempt.context.span_id
    call = otel.span("chat local/local-model")
    assert call.kind is SpanKind.CLIENT
    assert dict(call.attributes or {})["gen_ai.usage.output_tokens"] == 2


def test_without_propagate_no_traceparent_is_sent_and_no_key_is_recorded(
    server: FakeServer, otel: Otel
) -> None:
    server.expect("POST", "/v1/chat/completions", completion("hello"))
    with local_kernel(server, otel) as kernel:
        kernel.chat("local/local-model", "hi")
    (request,) = server.requests_to("/v1/chat/completions")
    assert "traceparent" not in request.headers
    assert request.headers["authorization"] == f"Bearer {KEY}"
    recorded = json.dumps([dict(s.attributes or {}) for s in otel.spans()], default=str)
    assert KEY not in recorded and "authorization" not in recorded.lower()


def test_metrics_have_the_conventions_names_units_and_buckets(
    server: FakeServer, otel: Otel
) -> None:
    server.expect("POST", "/v1/chat/completions", completion("hello"))
    with local_kernel(server, otel) as kernel:
        kernel.chat("local/local-model", "hi")
    metrics = otel.metrics()
    duration = metrics["gen_ai.client.operation.duration"]
    assert duration.unit == "s"
    (point,) = duration.data.data_points
    assert tuple(point.explicit_bounds) == semconv.DURATION_BUCKETS
    assert dict(point.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "local/local-model",
        "gen_ai.response.model": "local-model",
        "server.address": "127.0.0.1",
        "server.port": int(server.url.rsplit(":", 1)[1]),
    }
    tokens = metrics["gen_ai.client.token.usage"]
    assert tokens.unit == "{token}"
    by_type = {p.attributes["gen_ai.token.type"]: p for p in tokens.data.data_points}
    assert by_type["input"].sum == 9 and by_type["output"].sum == 2
    assert tuple(by_type["input"].explicit_bounds) == semconv.TOKEN_BUCKETS
    assert semconv.TOKEN_BUCKETS[-1] == 67108864 and len(semconv.TOKEN_BUCKETS) == 14


def test_metric_attributes_stay_bounded_under_made_up_model_names(otel: Otel) -> None:
    config = {
        "providers": {"mock": {"type": "mock"}},
        "models": {"fast": ["mock/echo"]},
        "plugins": {"disabled": ["otel"]},
    }
    rng = random.Random(7)
    with Kernel.from_config(config, plugins=[otel.plugin]) as kernel:
        for _ in range(200):
            name = "".join(rng.choices(string.ascii_lowercase, k=12))
            kernel.chat(f"mock/{name}", "hi")  # the mock answers any model
        kernel.chat("fast", "hi")
    points = otel.metrics()["gen_ai.client.operation.duration"].data.data_points
    models = {p.attributes["gen_ai.request.model"] for p in points}
    assert models == {semconv.OTHER, "fast"}
    assert len(otel.spans()) >= 200  # spans keep the name asked for
    assert {dict(s.attributes or {}).get("gen_ai.request.model") for s in otel.spans()} > {"fast"}


def test_no_sdk_configured_means_nothing_is_done_and_opentelemetry_is_not_imported() -> None:
    """In a fresh interpreter: calls through a kernel with the plugin loaded never
    import opentelemetry, and the plugin tells the kernel it is idle (so its hooks
    are not called); once the application imports it without configuring an SDK,
    the plugin still makes no span; once it sets an SDK's tracer provider, the next
    calls have their spans."""
    script = textwrap.dedent(
        """
        import sys, time
        import llmkernel_mock.plugin, llmkernel_otel.plugin
        from llmkernel import Kernel
        from llmkernel_otel import instrumentation_for
        from llmkernel_otel.instrument import PROBE_EVERY
        from llmkernel_otel.plugin import llmkernel_idle

        config = {"providers": {"mock": {"type": "mock"}}}
        plugins = [llmkernel_mock.plugin, llmkernel_otel.plugin]
        with Kernel.from_config(config, plugins=plugins, entry_points=False) as alone:
            # the only plugin listening to the call's end: idle, the kernel skips it
            assert "on_request_end" in alone.hooks.implemented
            assert "on_request_end" not in alone.hooks.active(alone)
        with Kernel.from_config(config) as kernel:
            assert any(p.name == "otel" and p.status == "loaded" for p in kernel.plugins)
            assert llmkernel_idle(kernel)
            kernel.chat("mock/echo", "hi")
            for _ in kernel.stream("mock/echo", "hi"):
                pass
            assert not [m for m in sys.modules if m.startswith("opentelemetry")], "imported"
            import opentelemetry.trace  # the application imports the API, sets nothing
            kernel.chat("mock/echo", "hi")
            instrumentation = instrumentation_for(kernel)
            assert instrumentation is not None
            assert instrumentation.tracer is None and instrumentation.instruments is None
            assert llmkernel_idle(kernel)

            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
                InMemorySpanExporter,
            )

            exporter = InMemorySpanExporter()
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            opentelemetry.trace.set_tracer_provider(provider)  # the application's SDK
            time.sleep(PROBE_EVERY * 1.5)
            assert not llmkernel_idle(kernel)
            kernel.chat("mock/echo", "hi")
            assert [s.name for s in exporter.get_finished_spans()] == [
                "attempt mock/echo",
                "chat mock/echo",
            ], exporter.get_finished_spans()
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def test_provider_names_are_the_conventions_well_known_values() -> None:
    assert semconv.provider_name("openai", "https://api.openai.com/v1") == "openai"
    assert semconv.provider_name("openai", "https://api.groq.com/openai/v1") == "groq"
    assert semconv.provider_name("openai", "http://127.0.0.1:8000/v1") == "openai"
    assert semconv.provider_name("anthropic") == "anthropic"
    assert semconv.provider_name("bedrock") == "aws.bedrock"
    assert semconv.provider_name("azure") == "azure.ai.openai"
    assert semconv.provider_name("gemini") == "gcp.gemini"
    assert semconv.provider_name("ollama") == "ollama"
