"""The SDK's own in-memory span exporter and metric reader, handed to an
:class:`OtelPlugin` of the test's (never to the global providers: every kernel in
this process loads the entry point)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmkernel_otel import OtelPlugin


@attrs.define
class Otel:
    plugin: OtelPlugin
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        found = [s for s in self.spans() if s.name == name]
        assert len(found) == 1, [s.name for s in self.spans()]
        return found[0]

    def metrics(self) -> dict[str, Any]:
        """Metric name -> the metric (its data points under ``.data.data_points``)."""
        data = self.reader.get_metrics_data()
        if data is None:
            return {}
        return {
            m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        }


@pytest.fixture
def otel() -> Iterator[Otel]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    plugin = OtelPlugin(tracer_provider=tracer_provider, meter_provider=meter_provider)
    yield Otel(plugin=plugin, exporter=exporter, reader=reader, tracer_provider=tracer_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()
