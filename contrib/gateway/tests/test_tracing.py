"""``llmkernel serve`` with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set: a request with a W3C
``traceparent`` gets a server span in the client's trace, the kernel's spans under
it, all received by an OTLP/HTTP endpoint on 127.0.0.1 (decoded with
``opentelemetry-proto``); the upstream gets the attempt's ``traceparent``."""

from __future__ import annotations

import http.server
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from .conftest import Gateway, Upstream, base_config
from .test_sdk import sse, upstream_chunk

SERVER = trace_pb2.Span.SpanKind.SPAN_KIND_SERVER
CLIENT = trace_pb2.Span.SpanKind.SPAN_KIND_CLIENT
INTERNAL = trace_pb2.Span.SpanKind.SPAN_KIND_INTERNAL


class Collector:
    """An OTLP/HTTP (protobuf) receiver: what the gateway's exporters send."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], trace_pb2.Span]] = []
        self.metric_names: set[str] = set()
        self.lock = threading.Lock()
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.path == "/v1/traces":
                    request = trace_service_pb2.ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    collector.add_spans(request)
                    answer = trace_service_pb2.ExportTraceServiceResponse()
                elif self.path == "/v1/metrics":
                    metrics = metrics_service_pb2.ExportMetricsServiceRequest()
                    metrics.ParseFromString(body)
                    collector.add_metrics(metrics)
                    answer = metrics_service_pb2.ExportMetricsServiceResponse()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = answer.SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add_spans(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        with self.lock:
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend((resource, span) for span in scope_spans.spans)

    def add_metrics(self, request: metrics_service_pb2.ExportMetricsServiceRequest) -> None:
        with self.lock:
            for resource_metrics in request.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    self.metric_names.update(m.name for m in scope_metrics.metrics)

    def of_trace(self, trace_id: bytes) -> list[trace_pb2.Span]:
        with self.lock:
            return [span for _, span in self.spans if span.trace_id == trace_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    receiver = Collector()
    yield receiver
    receiver.close()


def attributes(span: trace_pb2.Span) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in span.attributes:
        value = item.value
        kind = value.WhichOneof("value")
        out[item.key] = getattr(value, kind) if kind else None
    return out


def wait_for(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("not received in time")


def test_the_gateway_continues_the_callers_trace_down_to_the_upstream(
    collector: Collector,
    upstream: Upstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway-under-test")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "300")
    config = base_config(upstream.url) + '\n[plugin.otel]\npropagate = ["up"]\n'
    server = Gateway(config, tmp_path)
    try:
        upstream.answer(
            sse(
                upstream_chunk({"role": "assistant", "content": "hel"}),
                upstream_chunk({"content": "lo"}, finish="stop"),
            )
        )
        trace_id, parent_id = secrets.token_bytes(16), secrets.token_bytes(8)
        traceparent = f"00-{trace_id.hex()}-{parent_id.hex()}-01"
        with httpx.stream(
            "POST",
            f"{server.url}/v1/chat/completions",
            headers={"traceparent": traceparent},
            json={
                "model": "up/gpt-4o-mini",
                "messages": [{"role": "user", "content": "a secret question"}],
                "stream": True,
            },
            timeout=30,
        ) as answer:
            assert answer.status_code == 200
            body = answer.read().decode()
        assert "hel" in body and "[DONE]" in body
        spans = wait_for(
            lambda: (found := collector.of_trace(trace_id)) and len(found) >= 3 and found
        )
        (request,) = upstream.server.requests_to("/v1/chat/completions")
        untraced = httpx.get(f"{server.url}/health")  # probes get no span
        assert untraced.status_code == 200
        wait_for(lambda: "gen_ai.client.operation.duration" in collector.metric_names)
    finally:
        server.stop()
    by_kind = {span.kind: span for span in spans}
    server_span, call, attempt = by_kind[SERVER], by_kind[CLIENT], by_kind[INTERNAL]
    assert server_span.name == "POST /v1/chat/completions"
    assert server_span.parent_span_id == parent_id  # the client's span
    served = attributes(server_span)
    assert served["http.request.method"] == "POST"
    assert served["http.route"] == "/v1/chat/completions"
    assert served["http.response.status_code"] == 200
    assert call.name == "chat up/gpt-4o-mini"
    assert call.parent_span_id == server_span.span_id
    assert attributes(call)["gen_ai.provider.name"] == "openai"
    assert attributes(call)["gen_ai.request.stream"] is True
    assert attempt.parent_span_id == call.span_id
    assert attempt.name == "attempt up/gpt-4o-mini"
    # the upstream continues the same trace under the attempt's span
    _, upstream_trace, upstream_parent, _ = request.headers["traceparent"].split("-")
    assert bytes.fromhex(upstream_trace) == trace_id
    assert bytes.fromhex(upstream_parent) == attempt.span_id
    with collector.lock:
        resources = [resource for resource, _ in collector.spans]
        every = [attributes(span) for _, span in collector.spans]
    assert all(r.get("service.name") == "gateway-under-test" for r in resources)
    assert "a secret question" not in repr(every)  # no content by default
    assert not [s for s in every if s.get("url.path") == "/health"]
