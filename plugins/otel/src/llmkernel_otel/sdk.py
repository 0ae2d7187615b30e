"""OTLP export set up from the standard ``OTEL_*`` variables, for applications
(``llmkernel serve`` calls it in each worker, after the fork): the library itself
never configures anything.

:func:`configure_from_env` does something only when
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` /
``..._METRICS_ENDPOINT``) is set, ``OTEL_SDK_DISABLED`` is not ``true``, the SDK
and the OTLP/HTTP exporter are installed (``pip install 'llmkernel-otel[sdk]'``),
and the application has not set global providers of its own. Then: a
``TracerProvider`` with a ``BatchSpanProcessor`` and a ``MeterProvider`` with a
periodic reader, both exporting OTLP over HTTP/protobuf, with every other setting
from the SDK's own variables (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``,
``OTEL_METRIC_EXPORT_INTERVAL``, ``OTEL_TRACES_EXPORTER=none``...).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping

from llmkernel import log

__all__ = ["configure_from_env", "export_requested"]

_ENDPOINTS = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
)


def export_requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for OTLP export."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(env.get(name) for name in _ENDPOINTS)


def _wanted(env: Mapping[str, str], signal: str) -> bool:
    exporters = env.get(f"OTEL_{signal}_EXPORTER", "otlp").strip().lower()
    return exporters != "none"


def configure_from_env(service_name: str = "llmkernel") -> Callable[[], None] | None:
    """Set the global tracer and meter providers up for OTLP/HTTP export, as the
    environment says; returns the function that flushes and shuts them down, or
    ``None`` when nothing was set up (and says why in the log)."""
    env = os.environ
    if not export_requested(env):
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        log.warning(
            "otel.sdk.missing",
            note="OTEL_EXPORTER_OTLP_ENDPOINT is set but the SDK or the OTLP/HTTP exporter "
            "is not installed: pip install 'llmkernel-otel[sdk]'",
            error=str(exc),
        )
        return None
    protocol = env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf").strip()
    if protocol not in ("http/protobuf", ""):
        log.warning("otel.sdk.protocol", protocol=protocol, note="exporting http/protobuf")
    from opentelemetry import metrics, trace

    attributes: dict[str, str] = {"service.instance.id": uuid.uuid4().hex}
    if not env.get("OTEL_SERVICE_NAME") and "service.name=" not in env.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        attributes["service.name"] = service_name
    resource = Resource.create(attributes)
    shutdowns: list[Callable[[], object]] = []
    if _wanted(env, "TRACES") and isinstance(
        trace.get_tracer_provider(), trace.ProxyTracerProvider
    ):
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(tracer_provider)
        shutdowns.append(tracer_provider.shutdown)
    if _wanted(env, "METRICS") and type(metrics.get_meter_provider()).__module__.startswith(
        "opentelemetry.metrics"
    ):
        reader = PeriodicExportingMetricReader(OTLPMetricExporter())
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        metrics.set_meter_provider(meter_provider)
        shutdowns.append(meter_provider.shutdown)
    if not shutdowns:
        return None
    log.info("otel.sdk.configured", pid=os.getpid(), signals=len(shutdowns))

    def shutdown() -> None:
        for stop in shutdowns:
            try:
                stop()
            except Exception as exc:  # a collector gone at exit: nothing more to do
                log.warning("otel.sdk.shutdown_failed", error=f"{type(exc).__name__}: {exc}")

    return shutdown
