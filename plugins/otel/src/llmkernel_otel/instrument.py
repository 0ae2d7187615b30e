"""Spans and metrics for kernel calls, from the hooks, through opentelemetry-api.

One CLIENT span per call, named ``"{gen_ai.operation.name} {gen_ai.request.model}"``
(``chat fast``, ``embeddings openai/text-embedding-3-small``), child of the caller's
current span, from the call's start to its end (a stream's last event); under it one
INTERNAL span per attempt (``attempt up/gpt-4o-mini``) with its deployment, outcome
and the wait before it. Spans are made when the call ends, with their real start
times; with ``propagate`` set for a provider they are made live, when the attempt
starts, so the upstream's spans (its ``traceparent``) nest under the attempt.

Nothing is done while no SDK is configured: opentelemetry not imported at all (the
usual case), or the global providers still the API's proxies (a ``ProxyTracerProvider``;
a meter provider of the API's own ``opentelemetry.metrics`` package).
"""

from __future__ import annotations

import sys
import time
import weakref
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from llmkernel_otel import content, semconv
from llmkernel_otel.settings import OtelSettings

if TYPE_CHECKING:
    from llmkernel.context import Attempt, Outcome, RequestContext
    from llmkernel.kernel import Kernel

__all__ = ["STATE_KEY", "Instrumentation", "error_type"]

STATE_KEY = "llmkernel_otel"
_ATTEMPT_SPAN = "llmkernel_otel.span"
_ATTEMPT_HEADERS = "llmkernel_otel.headers"
_OPERATIONS = {"chat": "chat", "stream": "chat", "embed": "embeddings"}
_SCOPE = "llmkernel"
#: Seconds between two looks at the global providers while they are the API's own:
#: an SDK set up after calls began is seen within this long.
PROBE_EVERY = 0.25


def error_type(status: str, error: BaseException | None) -> str | None:
    """``error.type`` of an ending: the kernel's error kind (``rate_limit``,
    ``server``, ``budget``, ``breaker``...), ``cancelled``, or the exception's class
    name; ``None`` for a success and a stream the caller stopped reading."""
    if status in ("ok", "abandoned"):
        return None
    if status == "cancelled":
        return "cancelled"
    if error is None:
        return semconv.OTHER
    kind = getattr(error, "kind", None)
    if isinstance(kind, str) and kind and kind != "provider":
        return kind
    return type(error).__name__


@attrs.define(kw_only=True, eq=False)
class _Call:
    """What one call has told the hooks so far (``ctx.state[STATE_KEY]``): only
    failures and live spans; a call that succeeds at once leaves nothing here."""

    #: attempt index -> (its error, monotonic end), from ``on_error``
    failed: dict[int, tuple[BaseException, float]] = attrs.field(factory=dict)
    #: attempt index -> monotonic end, of the attempts whose span was live
    ended: dict[int, float] = attrs.field(factory=dict)
    span: Any = None  # the call's span when it was started live (propagation)


@attrs.frozen(kw_only=True)
class _Where:
    """A provider instance as the conventions name it."""

    provider_name: str
    address: str | None = None
    port: int | None = None


class Instrumentation:
    """Per kernel: the settings, and the tracer and instruments once an SDK is
    configured. ``tracer_provider`` and ``meter_provider`` default to the global
    ones (read on every call until an SDK is set, then kept)."""

    def __init__(
        self,
        kernel: Kernel,
        settings: OtelSettings | None = None,
        *,
        tracer_provider: Any = None,
        meter_provider: Any = None,
    ) -> None:
        # weakly: the plugin keeps this per kernel in a WeakKeyDictionary
        self._kernel = weakref.ref(kernel)
        self.settings = settings or OtelSettings()
        self.conventions = semconv.conventions_from_env()
        capture = self.settings.capture_content
        self.capture = semconv.capture_content_from_env() if capture is None else capture
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self.tracer: Any = None
        self.instruments: _Instruments | None = None
        self._where: dict[str, _Where] = {}
        # when the global providers were last found to be the API's own (no SDK):
        # asked again at most every PROBE_EVERY seconds, not on every call
        self._tracing_probed = self._metering_probed = -PROBE_EVERY

    # ------------------------------------------------------------------ enabled?

    def tracing(self) -> bool:
        """Whether a real tracer provider is there (the tracer is made then)."""
        if self.tracer is not None:
            return True
        provider = self._tracer_provider
        if provider is None:
            trace = sys.modules.get("opentelemetry.trace")
            if trace is None:
                return False  # nobody imported it: no SDK can be configured
            now = time.monotonic()
            if now - self._tracing_probed < PROBE_EVERY:
                return False
            provider = trace.get_tracer_provider()
            if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
                self._tracing_probed = now
                return False
        self.tracer = provider.get_tracer(
            _SCOPE, semconv.package_version(), schema_url=self.conventions.schema_url or None
        )
        return True

    def metering(self) -> bool:
        """Whether a real meter provider is there (the instruments are made then)."""
        if self.instruments is not None:
            return True
        provider = self._meter_provider
        if provider is None:
            metrics = sys.modules.get("opentelemetry.metrics")
            if metrics is None:
                return False
            now = time.monotonic()
            if now - self._metering_probed < PROBE_EVERY:
                return False
            provider = metrics.get_meter_provider()
            # the API's own providers (its proxy and NoOpMeterProvider) record nothing
            if type(provider).__module__.startswith("opentelemetry.metrics"):
                self._metering_probed = now
                return False
        meter = provider.get_meter(
            _SCOPE, semconv.package_version(), schema_url=self.conventions.schema_url or None
        )
        self.instruments = _Instruments(meter, self.conventions)
        return True

    def idle(self) -> bool:
        """No SDK (neither tracer nor meter provider): a call now would record nothing."""
        return not (self.tracer is not None or self.tracing()) and not (
            self.instruments is not None or self.metering()
        )

    # ------------------------------------------------------------------ hooks

    def attempt_started(self, ctx: RequestContext, attempt: Attempt) -> None:
        """The propagation gate's ``acquire``: the spans live, and the attempt's
        ``traceparent`` for its provider's requests."""
        if not self.settings.propagates_to(attempt.candidate.provider) or not self.tracing():
            return
        from opentelemetry import propagate, trace

        call = _call_of(ctx)
        offset = _offset_ns()
        if call.span is None:
            call.span = self._call_span(ctx, offset)
        span = self._attempt_span(call.span, attempt, offset, previous_end=_ended_before(ctx, call))
        attempt.state[_ATTEMPT_SPAN] = span
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        if carrier:
            try:
                from llmkernel_http.outgoing import add_headers
            except ImportError:  # no HTTP provider installed: nothing to send it on
                return
            attempt.state[_ATTEMPT_HEADERS] = add_headers(attempt.candidate.provider, carrier)

    def attempt_released(self, ctx: RequestContext, attempt: Attempt, outcome: Outcome) -> None:
        """The propagation gate's ``release``: the header goes, the live span ends."""
        outgoing = attempt.state.pop(_ATTEMPT_HEADERS, None)
        if outgoing is not None:
            outgoing.close()
        span = attempt.state.pop(_ATTEMPT_SPAN, None)
        if span is not None:
            now = time.monotonic()
            _call_of(ctx).ended[attempt.index] = now
            self._end_attempt(span, outcome.status, outcome.error, _offset_ns() + int(now * 1e9))

    def attempt_failed(self, ctx: RequestContext, error: BaseException) -> None:
        """``on_error``: the call's last attempt failed now (a retry or fallback may
        follow). Failures are rare: a call that succeeds at once costs nothing here."""
        if self.tracer is None and not self.tracing():
            return
        if ctx.attempts:
            _call_of(ctx).failed[ctx.attempts[-1].index] = (error, time.monotonic())

    def request_ended(self, ctx: RequestContext, outcome: Outcome) -> None:
        tracing = self.tracer is not None or self.tracing()
        metering = self.instruments is not None or self.metering()
        if not (tracing or metering):
            return
        operation = _OPERATIONS[ctx.kind]
        where = self._where_of(outcome, ctx)
        if tracing:
            self._trace(ctx, outcome, operation, where)
        if metering:
            self._measure(ctx, outcome, operation, where)

    # ------------------------------------------------------------------ spans

    def _call_span(self, ctx: RequestContext, offset: int) -> Any:
        from opentelemetry import context, trace

        request = ctx.request
        operation = _OPERATIONS[ctx.kind]
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": request.model,
            "llmkernel.request.id": ctx.id,
        }
        if ctx.candidates:  # known now: sampling decisions may read them
            first = self._where_for(ctx.candidates[0].provider)
            attributes["gen_ai.provider.name"] = first.provider_name
        attributes.update(_request_attributes(ctx))
        return self._tracer_start(
            f"{operation} {request.model}",
            context.get_current(),
            trace.SpanKind.CLIENT,
            attributes,
            offset + int(ctx.started * 1e9),
        )

    def _tracer_start(
        self, name: str, parent: Any, kind: Any, attributes: dict[str, Any], start: int
    ) -> Any:
        return self.tracer.start_span(
            name, context=parent, kind=kind, attributes=attributes, start_time=start
        )

    def _attempt_span(
        self, parent: Any, attempt: Attempt, offset: int, *, previous_end: float | None
    ) -> Any:
        from opentelemetry import trace

        candidate = attempt.candidate
        where = self._where_for(candidate.provider)
        wait = 0.0 if previous_end is None else max(0.0, attempt.started - previous_end)
        attributes: dict[str, Any] = {
            "gen_ai.provider.name": where.provider_name,
            "gen_ai.request.model": candidate.model,
            "llmkernel.deployment": candidate.qualified,
            "llmkernel.attempt.index": attempt.index,
            "llmkernel.attempt.number": attempt.number,
            "llmkernel.attempt.wait": round(wait, 6),
        }
        _add_server(attributes, where)
        return self._tracer_start(
            f"attempt {candidate.qualified}",
            trace.set_span_in_context(parent),
            trace.SpanKind.INTERNAL,
            attributes,
            offset + int(attempt.started * 1e9),
        )

    def _end_attempt(self, span: Any, status: str, error: BaseException | None, end: int) -> None:
        span.set_attribute("llmkernel.attempt.outcome", status)
        failure = error_type(status, error)
        if failure is not None:
            _fail(span, failure, error)
        span.end(end_time=end)

    def _trace(
        self, ctx: RequestContext, outcome: Outcome, operation: str, where: _Where | None
    ) -> None:
        call: _Call = ctx.state.get(STATE_KEY) or _Call()
        now = time.monotonic()
        offset = _offset_ns()
        end = offset + int(now * 1e9)
        span = call.span
        if span is None:
            span = self._call_span(ctx, offset)
        previous: float | None = None
        attempts = ctx.attempts
        for position, attempt in enumerate(attempts):
            later = attempts[position + 1].started if position + 1 < len(attempts) else now
            index = attempt.index
            if index in call.ended:  # its live span ended with it
                previous = call.ended[index]
                continue
            status, error, ended = _attempt_ending(ctx, call, attempt, outcome, later)
            child = self._attempt_span(span, attempt, offset, previous_end=previous)
            self._end_attempt(child, status, error, offset + int(ended * 1e9))
            previous = ended
        attributes = self._response_attributes(ctx, outcome, where)
        span.set_attributes(attributes)
        if self.capture:
            _capture(span, ctx, outcome)
        failure = error_type(outcome.status, outcome.error)
        if failure is not None:
            _fail(span, failure, outcome.error)
        span.end(end_time=end)

    def _response_attributes(
        self, ctx: RequestContext, outcome: Outcome, where: _Where | None
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "llmkernel.status": outcome.status,
            "llmkernel.cached": bool(outcome.cached),
            "llmkernel.attempts": outcome.attempts,
        }
        metadata = ctx.metadata
        if metadata.get("tenant"):
            out["llmkernel.tenant"] = metadata["tenant"]
        if metadata.get("key"):
            out["llmkernel.key"] = metadata["key"]  # the key's name, never the key
        if where is not None:
            out["gen_ai.provider.name"] = where.provider_name
            _add_server(out, where)
        candidate = outcome.candidate
        if candidate is not None:
            out["llmkernel.provider"] = candidate.provider
            out["llmkernel.deployment"] = candidate.qualified
        response = outcome.response
        if response is not None:
            response_id = getattr(response, "id", None)
            if response_id:
                out["gen_ai.response.id"] = response_id
            if response.model:
                out["gen_ai.response.model"] = response.model
            finish = getattr(response, "finish_reason", None)
            if finish is not None and outcome.status == "ok":
                out["gen_ai.response.finish_reasons"] = [content.FINISH_REASONS.get(finish, finish)]
            if candidate is None and response.provider:
                out["llmkernel.provider"] = response.provider
        usage = outcome.usage
        if usage is not None:
            out["gen_ai.usage.input_tokens"] = usage.input_tokens
            if ctx.kind != "embed":
                out["gen_ai.usage.output_tokens"] = usage.output_tokens
            if usage.cached_input_tokens:
                out["gen_ai.usage.cache_read.input_tokens"] = usage.cached_input_tokens
            if usage.cache_write_tokens:
                out[self.conventions.cache_write_attribute] = usage.cache_write_tokens
            if usage.reasoning_tokens:
                out["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
        if outcome.first_event_latency is not None and ctx.kind == "stream":
            out["gen_ai.response.time_to_first_chunk"] = outcome.first_event_latency
        cost = outcome.cost
        if isinstance(cost, Decimal):
            out["llmkernel.cost"] = float(cost)
        return out

    # ------------------------------------------------------------------ metrics

    def _measure(
        self, ctx: RequestContext, outcome: Outcome, operation: str, where: _Where | None
    ) -> None:
        instruments = self.instruments
        assert instruments is not None
        kernel = self._kernel()
        if kernel is None:
            return
        names = kernel.models.names
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": names.model(ctx.request.model) or semconv.OTHER,
        }
        if where is not None:
            attributes["gen_ai.provider.name"] = where.provider_name
            _add_server(attributes, where)
        candidate = outcome.candidate
        response = outcome.response
        if candidate is not None and response is not None and response.model:
            known = names.deployment(candidate.provider, candidate.model)
            attributes["gen_ai.response.model"] = response.model if known else semconv.OTHER
        failure = error_type(outcome.status, outcome.error)
        with_error = attributes if failure is None else {**attributes, "error.type": failure}
        instruments.duration[operation].record(outcome.latency, with_error)
        if ctx.kind == "stream" and outcome.first_event_latency is not None:
            instruments.time_to_first_chunk.record(outcome.first_event_latency, attributes)
        usage = outcome.usage
        if usage is not None or self.conventions.token_usage is None:
            instruments.record_tokens(operation, usage, attributes, with_error)

    # ------------------------------------------------------------------ places

    def _where_of(self, outcome: Outcome, ctx: RequestContext) -> _Where | None:
        candidate = outcome.candidate
        if candidate is not None:
            return self._where_for(candidate.provider)
        response = outcome.response
        if response is not None and response.provider:  # a cache hit
            return self._where_for(response.provider)
        if ctx.candidates:
            return self._where_for(ctx.candidates[0].provider)
        return None

    def _where_for(self, instance: str) -> _Where:
        known = self._where.get(instance)
        if known is not None:
            return known
        provider_type, base_url = instance, None
        try:
            kernel = self._kernel()
            assert kernel is not None, "the kernel is gone"
            provider = kernel.provider(instance)
            provider_type = provider.type
            base = getattr(provider, "base_url", None)
            base_url = base() if callable(base) else None
        except Exception:  # an instance that cannot say where it is: its name only
            pass
        from urllib.parse import urlsplit

        address = port = None
        if isinstance(base_url, str) and base_url:
            parts = urlsplit(base_url)
            address = parts.hostname
            port = parts.port or (443 if parts.scheme == "https" else 80)
        where = _Where(
            provider_name=semconv.provider_name(provider_type, base_url),
            address=address,
            port=port,
        )
        if len(self._where) < 1024:  # provider instances: bounded by the config
            self._where[instance] = where
        return where


class _Instruments:
    """The metric instruments of the chosen conventions."""

    def __init__(self, meter: Any, conventions: semconv.Conventions) -> None:
        self.conventions = conventions
        made: dict[str, Any] = {}

        def histogram(name: str, unit: str, description: str, buckets: tuple[float, ...]) -> Any:
            if name not in made:
                made[name] = meter.create_histogram(
                    name,
                    unit=unit,
                    description=description,
                    explicit_bucket_boundaries_advisory=list(buckets),
                )
            return made[name]

        self.duration = {
            op: histogram(name, "s", "GenAI operation duration.", semconv.DURATION_BUCKETS)
            for op, name in conventions.duration.items()
        }
        self.time_to_first_chunk = histogram(
            conventions.time_to_first_chunk,
            "s",
            "Time to receive the first chunk of a streamed answer.",
            semconv.DURATION_BUCKETS,
        )
        self.token_usage = (
            histogram(
                conventions.token_usage,
                "{token}",
                "Number of input and output tokens used.",
                semconv.TOKEN_BUCKETS,
            )
            if conventions.token_usage
            else None
        )
        self.counters = {
            kind: meter.create_counter(name, unit="{token}", description=f"{kind} tokens used.")
            for kind, name in conventions.token_counters.items()
        }
        self.token_histograms = {
            key: histogram(name, "{token}", "Tokens per operation.", semconv.TOKEN_BUCKETS)
            for key, name in conventions.token_histograms.items()
        }

    def record_tokens(
        self,
        operation: str,
        usage: Any,
        attributes: Mapping[str, Any],
        with_error: Mapping[str, Any],
    ) -> None:
        if self.token_usage is not None:
            self.token_usage.record(
                usage.input_tokens, {**attributes, "gen_ai.token.type": "input"}
            )
            if operation != "embeddings":
                self.token_usage.record(
                    usage.output_tokens, {**attributes, "gen_ai.token.type": "output"}
                )
            return
        # latest: every operation is counted, failed ones with 0 (modality unknown)
        values = {
            "input": usage.input_tokens if usage else 0,
            "output": usage.output_tokens if usage else 0,
            "cache_read": usage.cached_input_tokens if usage else 0,
            "cache_write": usage.cache_write_tokens if usage else 0,
            "reasoning": usage.reasoning_tokens if usage else 0,
        }
        if operation == "chat":
            counted = {**attributes, "gen_ai.token.modality": "unknown"}
            for kind, counter in self.counters.items():
                if kind in ("input", "output") or values[kind]:
                    counter.add(values[kind], counted)
        for (op, kind), histogram in self.token_histograms.items():
            if op == operation:
                histogram.record(values[kind], with_error)


# ---------------------------------------------------------------------- helpers


def _offset_ns() -> int:
    """Epoch nanoseconds minus monotonic nanoseconds, now: turns the kernel's
    monotonic timestamps into span times."""
    return time.time_ns() - int(time.monotonic() * 1e9)


def _call_of(ctx: RequestContext) -> _Call:
    call: _Call | None = ctx.state.get(STATE_KEY)
    if call is None:
        call = ctx.state[STATE_KEY] = _Call()
    return call


def _ended_before(ctx: RequestContext, call: _Call) -> float | None:
    """When the attempt before the current one ended (its failure, or its live span's
    end), for the wait before this one."""
    if len(ctx.attempts) < 2:
        return None
    before = ctx.attempts[-2].index
    if before in call.ended:
        return call.ended[before]
    failed = call.failed.get(before)
    return failed[1] if failed is not None else None


def _attempt_ending(
    ctx: RequestContext, call: _Call, attempt: Attempt, outcome: Outcome, later: float
) -> tuple[str, BaseException | None, float]:
    """How an attempt ended, from what the hooks saw: its ``on_error``, a gate's
    refusal of its candidate (``ctx.dropped``), or the call's own ending (the last)."""
    failed = call.failed.get(attempt.index)
    if failed is not None:
        return "error", failed[0], failed[1]
    if attempt is ctx.attempts[-1]:
        return outcome.status, outcome.error, later
    from llmkernel.errors import RefusedError

    for drop in ctx.dropped:
        if drop.candidate == attempt.candidate and isinstance(drop.error, RefusedError):
            return "refused", drop.error, attempt.started
    return "error", None, later


def _add_server(attributes: dict[str, Any], where: _Where) -> None:
    if where.address:
        attributes["server.address"] = where.address
        if where.port:
            attributes["server.port"] = where.port


def _request_attributes(ctx: RequestContext) -> dict[str, Any]:
    from llmkernel.types import ChatRequest

    request = ctx.request
    out: dict[str, Any] = {}
    if isinstance(request, ChatRequest):
        if request.max_tokens is not None:
            out["gen_ai.request.max_tokens"] = request.max_tokens
        if request.temperature is not None:
            out["gen_ai.request.temperature"] = float(request.temperature)
        if request.top_p is not None:
            out["gen_ai.request.top_p"] = float(request.top_p)
        if request.stop:
            out["gen_ai.request.stop_sequences"] = list(request.stop)
        seed = request.options.get("seed")
        if isinstance(seed, int) and not isinstance(seed, bool):
            out["gen_ai.request.seed"] = seed
        fmt = request.response_format
        if fmt is not None:
            out["gen_ai.output.type"] = "text" if fmt.type == "text" else "json"
        if ctx.kind == "stream":
            out["gen_ai.request.stream"] = True
    elif request.dimensions is not None:
        out["gen_ai.embeddings.dimension.count"] = request.dimensions
    return out


def _fail(span: Any, failure: str, error: BaseException | None) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("error.type", failure)
    description = f"{type(error).__name__}: {error}"[:300] if error is not None else failure
    span.set_status(Status(StatusCode.ERROR, description))


def _capture(span: Any, ctx: RequestContext, outcome: Outcome) -> None:
    from llmkernel.types import ChatRequest, Response

    request = ctx.request
    if isinstance(request, ChatRequest):
        span.set_attribute("gen_ai.input.messages", content.input_messages(request.messages))
    response = outcome.response
    if isinstance(response, Response):
        span.set_attribute("gen_ai.output.messages", content.output_messages(response))
