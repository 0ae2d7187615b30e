"""OpenTelemetry for llmkernel: spans and metrics by the GenAI semantic conventions
for every kernel call, through ``opentelemetry-api`` only.

Installed, the plugin instruments every call; without an SDK configured by the
application it does next to nothing. ``llmkernel_otel.sdk`` sets up OTLP export
from the standard ``OTEL_*`` variables (the ``sdk`` extra), as ``llmkernel serve``
does; ``llmkernel_otel.server`` makes the gateway's server spans.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "llmkernel_otel.instrument": ["Instrumentation"],
        "llmkernel_otel.plugin": ["OtelPlugin", "instrumentation_for"],
        "llmkernel_otel.settings": ["OtelSettings"],
    },
)
if TYPE_CHECKING:
    from llmkernel_otel.instrument import Instrumentation
    from llmkernel_otel.plugin import OtelPlugin, instrumentation_for
    from llmkernel_otel.settings import OtelSettings

__all__ = ["Instrumentation", "OtelPlugin", "OtelSettings", "instrumentation_for"]
