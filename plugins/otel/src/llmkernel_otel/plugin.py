"""llmkernel hooks of the OpenTelemetry plugin: ``on_request_end`` makes the spans
and records the metrics, ``on_error`` notes failed attempts (so a call that succeeds
at once runs one hook of this plugin), and a gate makes the spans live where
``propagate`` asks.

Cheap to import, and cheap to run without an SDK: opentelemetry is imported only
once the application has imported it (and then only if it configured providers).
The entry point registers :data:`HOOKS`, which reads the global providers; tests
and applications with their own providers register an :class:`OtelPlugin` of their
own (and disable the entry point: ``[plugins] disabled = ["otel"]``).

Without an SDK, ``llmkernel_idle`` tells the kernel so when each call starts: the
kernel then calls none of these hooks and builds no outcome for them.
"""

from __future__ import annotations

import sys
import weakref
from typing import TYPE_CHECKING, Any

from llmkernel import hookimpl

if TYPE_CHECKING:
    from llmkernel.config import Config
    from llmkernel.context import Attempt, Outcome, RequestContext
    from llmkernel.kernel import Kernel
    from llmkernel_otel.instrument import Instrumentation

__all__ = [
    "HOOKS",
    "OtelPlugin",
    "configure",
    "instrumentation_for",
    "llmkernel_idle",
    "on_error",
    "on_request_end",
    "provide_gate",
]

NAME = "otel"
_modules = sys.modules


class OtelPlugin:
    """The hooks, for every kernel that loads them. ``tracer_provider`` and
    ``meter_provider`` default to the global ones; ``name`` is the plugin's name in
    the kernel (the entry point's is ``otel``; both read ``[plugin.otel]``)."""

    def __init__(
        self,
        *,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        name: str = "otel-custom",
    ) -> None:
        self.__llmkernel_name__ = name
        #: providers of its own: the hooks always work (else only once the application
        #: has imported opentelemetry, without which no SDK can be configured)
        self.explicit = tracer_provider is not None or meter_provider is not None
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.kernels: weakref.WeakKeyDictionary[Any, Instrumentation] = weakref.WeakKeyDictionary()
        # the kernel asked last and its instrumentation (every hook of every call asks)
        self._last: tuple[weakref.ref[Any], Instrumentation] | None = None
        #: a kernel propagates ``traceparent``: its gate may start a call's span,
        #: so the end hook must run for every call (never idle)
        self.propagating = False

    def llmkernel_idle(self, kernel: Kernel) -> bool:
        """Whether this plugin's hooks would do nothing in a call starting now (no SDK
        to report to): the kernel then skips them, and builds no outcome for them."""
        if self.propagating:
            return False
        if not self.explicit and "opentelemetry" not in _modules:
            return True  # the usual case without an SDK: one dict lookup a call
        instrumentation = self._of(kernel)
        return instrumentation is None or instrumentation.idle()

    def _of(self, kernel: Any) -> Instrumentation | None:
        last = self._last
        if last is not None and last[0]() is kernel:
            return last[1]
        found = self.kernels.get(kernel)
        if found is not None:
            self._last = (weakref.ref(kernel), found)
        return found

    @hookimpl
    def configure(self, kernel: Kernel, config: Config) -> None:
        from llmkernel.options import parse_options
        from llmkernel_otel.instrument import Instrumentation
        from llmkernel_otel.settings import OtelSettings

        table = config.plugin_settings(NAME)
        settings = (
            parse_options(OtelSettings, table, where=config.where(f"plugin.{NAME}"))
            if table
            else OtelSettings()
        )
        self.propagating = self.propagating or bool(settings.propagate)
        self.kernels[kernel] = Instrumentation(
            kernel,
            settings,
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
        )

    @hookimpl
    def provide_gate(self, kernel: Kernel) -> Any:
        instrumentation = self.kernels.get(kernel)
        if instrumentation is None or not instrumentation.settings.propagate:
            return None  # nothing to propagate: no gate on the hot path
        return _PropagationGate(instrumentation)

    @hookimpl
    def on_error(self, kernel: Kernel, ctx: RequestContext, error: Exception) -> None:
        # a failed attempt (rare): a call that succeeds at once never comes here, so
        # the end hook of the call is the only one on the hot path
        if not self.explicit and "opentelemetry" not in _modules:
            return
        instrumentation = self._of(kernel)
        if instrumentation is not None:
            instrumentation.attempt_failed(ctx, error)

    @hookimpl
    def on_request_end(self, kernel: Kernel, ctx: RequestContext, outcome: Outcome) -> None:
        if not self.explicit and "opentelemetry" not in _modules:
            return  # when the kernel calls it anyway (another plugin is not idle)
        instrumentation = self._of(kernel)
        if instrumentation is not None:
            instrumentation.request_ended(ctx, outcome)


class _PropagationGate:
    """Starts an attempt's span when it starts and puts its ``traceparent`` on the
    requests of its provider; takes the header away when the attempt ends."""

    def __init__(self, instrumentation: Instrumentation) -> None:
        self.instrumentation = instrumentation

    async def acquire(self, ctx: RequestContext, attempt: Attempt) -> None:
        self.instrumentation.attempt_started(ctx, attempt)

    def release(self, ctx: RequestContext, attempt: Attempt, outcome: Outcome) -> None:
        self.instrumentation.attempt_released(ctx, attempt, outcome)


def instrumentation_for(kernel: Kernel) -> Instrumentation | None:
    """The entry point's instrumentation of ``kernel`` (``None`` when the plugin is
    not loaded in it)."""
    return HOOKS.kernels.get(kernel)


#: What the entry point registers: the hooks below are its bound methods.
HOOKS = OtelPlugin(name=NAME)
configure = HOOKS.configure
provide_gate = HOOKS.provide_gate
on_error = HOOKS.on_error
on_request_end = HOOKS.on_request_end
llmkernel_idle = HOOKS.llmkernel_idle
