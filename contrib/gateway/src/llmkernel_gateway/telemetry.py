"""The gateway's observability in one object: its Prometheus metrics, the kernel
plugin that feeds them (:mod:`llmkernel_gateway.observe`), the status page's
numbers, and, when ``llmkernel-otel`` is loaded, OTLP export and server spans.

The app makes one :class:`Telemetry`, hands :meth:`Telemetry.plugins` to its kernel,
calls :meth:`Telemetry.start` once the kernel is built (in each worker, after the
fork), :meth:`Telemetry.request_done` per request and :meth:`Telemetry.stop` at
shutdown.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from llmkernel import log
from llmkernel_gateway import observe
from llmkernel_gateway.metrics import Labels, Metrics, build_info, redis_collector

if TYPE_CHECKING:
    import asyncio

    from llmkernel.kernel import Kernel
    from llmkernel_gateway.settings import GatewaySettings, Key

__all__ = ["UNTRACED", "Telemetry"]

#: Paths that get no server span: probes, scrapes and the status page.
UNTRACED = frozenset(("/health", "/metrics", "/", "/status.json", "/login"))
#: Budget series at most (limits times the configured values of their ``*`` selectors).
_BUDGET_SERIES = 1000


class Telemetry:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.observer = observe.Observer(self.metrics)
        self.kernel: Kernel | None = None
        self.spans: Any = None  # llmkernel_otel.server.ServerSpans when traced
        self._otel_shutdown: Callable[[], None] | None = None
        self._refresher: asyncio.Task[None] | None = None

    def plugins(self) -> list[object]:
        return [self.observer]

    def start(self, kernel: Kernel, keys: Iterable[Key], routes: Iterable[str]) -> None:
        self.configure(kernel, keys)
        metrics = self.metrics
        loaded = [p for p in kernel.plugins if p.status == "loaded"]
        if any(p.name == "otel" for p in loaded):
            self._start_tracing([r for r in routes if r not in UNTRACED])
        if metrics.multiprocess:
            import asyncio

            self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())

    def configure(self, kernel: Kernel, keys: Iterable[Key]) -> None:
        """What the metrics read from the kernel's config: at start and after every
        reconfigure (label values, plugins, budgets)."""
        from llmkernel.models import live_names

        self.kernel = kernel
        metrics = self.metrics
        metrics.labels = Labels(live_names(kernel))
        loaded = [p for p in kernel.plugins if p.status == "loaded"]
        extra = [build_info([(p.name, p.distribution, p.version) for p in loaded])]
        budgets = _budget_collector(kernel, list(keys), metrics.labels)
        if budgets is not None:
            extra.append(budgets)
        redis = redis_collector(kernel)
        if redis is not None:
            extra.append(redis)
        metrics.extra = extra
        self.observer.experiments = frozenset(kernel.config.experiments)

    def _start_tracing(self, routes: list[str]) -> None:
        try:
            from opentelemetry import trace

            from llmkernel_otel import sdk
            from llmkernel_otel.server import ServerSpans
        except ImportError:  # the plugin without opentelemetry-api: nothing to trace
            return
        self._otel_shutdown = sdk.configure_from_env("llmkernel-gateway")
        provider = trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
            return  # no SDK: no server spans either
        self.spans = ServerSpans(routes)

    async def stop(self) -> None:
        task, self._refresher = self._refresher, None
        if task is not None:
            import asyncio

            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.metrics.close()

    def flush(self) -> None:
        """After the kernel closed: the last spans and metrics leave."""
        shutdown, self._otel_shutdown = self._otel_shutdown, None
        if shutdown is not None:
            shutdown()

    # ------------------------------------------------------------------ requests

    def request_done(
        self,
        *,
        route: str,
        key: str,
        model: str,
        status: int,
        latency: float,
        response: Any = None,
        error_kind: str | None = None,
        ttft: float | None = None,
        rid: str = "",
        semantic: bool = False,
    ) -> None:
        """The metrics of one request (``model`` as the client sent it); ``semantic``:
        answered by the semantic cache."""
        seen = observe.take()
        metrics = self.metrics
        labels = metrics.labels
        candidate = seen.candidate if seen is not None else None
        if labels is None:
            provider, served = model.partition("/")[0], model
        elif candidate is not None:
            provider, served = labels.deployment(candidate.provider, candidate.model)
        elif response is not None:  # a cache hit: the deployment that first answered
            provider, served = labels.deployment(response.provider, response.model)
        else:
            provider, served = labels.requested(model)
        metrics.observe(
            route=route,
            provider=provider,
            model=served,
            key=key,
            status=status,
            latency=latency,
            ttft=ttft,
            usage=getattr(response, "usage", None),
            cost=getattr(response, "cost", None),
            cached=bool(getattr(response, "cached", False)),
            error_kind=error_kind,
            upstream=seen.upstream if seen is not None else None,
            semantic=semantic,
        )
        spans = self.spans
        if spans is not None:
            spans.answered(status, **{"llmkernel.request.id": rid, "llmkernel.key": key or None})

    def refused(self, reason: str, scope: str) -> None:
        self.metrics.refused(reason, scope)

    def chunks(self, candidate: Any) -> Callable[[], None]:
        """A function to call after each chunk sent: the time since the one before."""
        labels = self.metrics.labels
        deployment = (
            labels.deployment(candidate.provider, candidate.model)
            if labels is not None and candidate is not None
            else ("", "")
        )
        histogram = self.metrics.child(self.metrics.chunk, deployment)
        last = [time.perf_counter()]

        def tick() -> None:
            now = time.perf_counter()
            histogram.observe(now - last[0])
            last[0] = now

        return tick

    # ------------------------------------------------------------------ reading

    def refresh(self) -> None:
        kernel = self.kernel
        if kernel is None:
            return
        try:
            stats = kernel.stats()
        except Exception as exc:
            log.warning("gateway.kernel_stats_failed", error=f"{type(exc).__name__}: {exc}")
            return
        self.metrics.refresh(stats)

    async def _refresh_loop(self) -> None:
        import asyncio

        while True:
            await asyncio.sleep(self.settings.metrics_refresh)
            self.refresh()

    def render(self) -> tuple[bytes, str]:
        self.refresh()
        return self.metrics.render()

    def deployment_rows(self) -> dict[str, dict[str, Any]]:
        from llmkernel_gateway.stats import deployment_rows

        self.refresh()
        return deployment_rows(self.metrics.families())


def _budget_collector(kernel: Kernel, keys: list[Key], labels: Labels) -> Any:
    """``llmkernel_gateway_budget_remaining_usd`` and ``..._budget_limit_usd`` per
    limit of the budgets plugin (and per configured value of a ``"*"`` selector),
    read from its store at scrape time; ``None`` without budgets."""
    try:
        from llmkernel_budgets.limits import EACH, Scope
        from llmkernel_budgets.plugin import budgets_for
    except ImportError:
        return None
    found = budgets_for(kernel)
    if found is None:
        return None
    store = found
    names = labels.names
    values: dict[str, list[str]] = {
        "key": sorted({k.name for k in keys}),
        "tenant": sorted({k.tenant for k in keys}),
        "provider": sorted(names.providers),
        "model": sorted({d.partition("/")[2] for d in names.deployments}),
    }

    def scopes(limit: Any) -> Iterator[tuple[str, Any]]:
        each = [d for d, v in limit.selectors().items() if v == EACH]
        if not each:
            yield "", None
            return
        for combo in itertools.product(*(values[d] for d in each)):
            chosen = dict(zip(each, combo, strict=True))
            label = ",".join(f"{d}={v}" for d, v in chosen.items())
            yield label, Scope(**chosen)

    from prometheus_client.core import GaugeMetricFamily

    class Budgets:
        def collect(self) -> Iterator[Any]:
            remaining = GaugeMetricFamily(
                "llmkernel_gateway_budget_remaining_usd",
                "What a budget has left this period (its amount minus the recorded spend).",
                labels=["limit", "period", "scope"],
            )
            amount = GaugeMetricFamily(
                "llmkernel_gateway_budget_limit_usd",
                "A budget's amount per period.",
                labels=["limit", "period"],
            )
            count = 0
            now = time.time()
            for limit in store.limits:
                amount.add_metric([limit.name, limit.period], float(limit.amount))
                for label, scope in scopes(limit):
                    if count >= _BUDGET_SERIES:
                        break
                    count += 1
                    left = limit.amount - _spent(store, limit, scope, now)
                    remaining.add_metric([limit.name, limit.period, label], float(left))
            yield remaining
            yield amount

    return Budgets()


def _spent(store: Any, limit: Any, scope: Any, now: float) -> Decimal:
    try:
        spent: Decimal = store.spent(limit, scope, now=now)
    except Exception as exc:  # a scrape must not fail on a busy database
        log.warning("gateway.budget_read_failed", limit=limit.name, error=str(exc))
        return Decimal(0)
    return spent
