"""What the gateway's ``/metrics`` learns from its kernel, through the kernel's hooks:
a plugin the gateway registers in its own kernel.

- a gate acquired last and released first, so it brackets the provider calls: the
  time from the first call's start to the last one's end is the request's upstream
  time (the gateway's overhead is the rest);
- ``on_attempt_end``: attempts by outcome, retries, refusals by reason and scope;
- ``on_request_end``: fallbacks (a call leaving a deployment for the next one),
  which deployment answered or failed last (the request's labels), and an A/B
  test's call by variant.

Per request these land in a :class:`RequestTelemetry` held by a context variable: the
kernel runs the hooks in the request's task (or a task it started, which shares
the object), and the gateway reads it with :func:`take` when it logs the request.
"""

from __future__ import annotations

import itertools
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import attrs

from llmkernel import hookimpl

if TYPE_CHECKING:
    from llmkernel.context import Attempt, Outcome, RequestContext
    from llmkernel.routing import Candidate
    from llmkernel_gateway.metrics import Metrics

__all__ = ["Observer", "RequestTelemetry", "take"]

_STARTED = "llmkernel_gateway.upstream_started"


@attrs.define(kw_only=True, eq=False)
class RequestTelemetry:
    """One request as its kernel call saw it."""

    first_start: float | None = None
    last_end: float | None = None
    candidate: Candidate | None = None

    @property
    def upstream(self) -> float | None:
        """Seconds from the first provider call's start to the last one's end."""
        if self.first_start is None or self.last_end is None:
            return None
        return self.last_end - self.first_start


_current: ContextVar[RequestTelemetry | None] = ContextVar(
    "llmkernel_gateway_telemetry", default=None
)


def _telemetry() -> RequestTelemetry:
    found = _current.get()
    if found is None:
        found = RequestTelemetry()
        _current.set(found)
    return found


def take() -> RequestTelemetry | None:
    """This request's telemetry (and forget it: the next request starts afresh)."""
    found = _current.get()
    if found is not None:
        _current.set(None)
    return found


class _UpstreamTimer:
    """The last gate: its acquire is the provider call's start, its release the end."""

    async def acquire(self, ctx: RequestContext, attempt: Attempt) -> None:
        now = time.perf_counter()
        attempt.state[_STARTED] = now
        telemetry = _telemetry()
        if telemetry.first_start is None:
            telemetry.first_start = now

    def release(self, ctx: RequestContext, attempt: Attempt, outcome: Outcome) -> None:
        if attempt.state.pop(_STARTED, None) is not None:
            _telemetry().last_end = time.perf_counter()


class Observer:
    """The gateway's kernel plugin (registered by the gateway, never an entry point)."""

    __llmkernel_name__ = "gateway-metrics"

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._timer = _UpstreamTimer()
        #: the config's experiments (set at start): the variant metrics' label values
        self.experiments: frozenset[str] = frozenset()

    @hookimpl(trylast=True)  # the last gate acquired, the first released
    def provide_gate(self, kernel: Any) -> _UpstreamTimer:
        return self._timer

    def _deployment(self, candidate: Candidate) -> tuple[str, str]:
        labels = self.metrics.labels
        if labels is None:
            return candidate.provider, candidate.model
        return labels.deployment(candidate.provider, candidate.model)

    @hookimpl
    def on_attempt_end(self, ctx: RequestContext, attempt: Attempt, outcome: Outcome) -> None:
        metrics = self.metrics
        deployment = self._deployment(attempt.candidate)
        metrics.child(metrics.attempts, (*deployment, outcome.status)).inc()
        if attempt.number > 1:
            metrics.child(metrics.retries, deployment).inc()
        if outcome.status == "refused":
            error = outcome.error
            reason = str(getattr(error, "kind", "") or "refused")
            limit = getattr(error, "limit", "")
            metrics.refused(reason, limit if limit else "/".join(deployment))
        _telemetry().candidate = attempt.candidate

    @hookimpl
    def on_request_end(self, ctx: RequestContext, outcome: Outcome) -> None:
        metrics = self.metrics
        attempts = ctx.attempts
        for before, after in itertools.pairwise(attempts):
            if before.candidate != after.candidate:
                metrics.child(metrics.fallbacks, self._deployment(before.candidate)).inc()
        if not attempts and outcome.status == "refused":  # refused before any attempt
            error = outcome.error
            reason = str(getattr(error, "kind", "") or "refused")
            metrics.refused(reason, getattr(error, "limit", "") or "request")
        if outcome.candidate is not None:
            _telemetry().candidate = outcome.candidate
        if ctx.variant is not None and ctx.request.model in self.experiments:
            metrics.variant(ctx.request.model, ctx.variant, outcome)
