"""Prometheus metrics with the official ``prometheus-client``, imported on first use.

One process: metrics live in a private registry, beside the process and Python
collectors. Several workers (``--workers N``): ``PROMETHEUS_MULTIPROC_DIR`` is set
before the workers start, each writes its values to files there, and ``/metrics``
in any worker reads them all (the library's multiprocess mode), so a scrape sees
the whole server; what only a worker knows (its breakers, cache counts, process
figures) it copies into those files every ``metrics_refresh`` seconds and before
answering a scrape.

Label values are bounded by the configuration: ``provider`` and ``model`` name a
deployment the config defines (an alias target, a model a provider declares) or
are ``other``; ``key`` is a configured key's name. No client can grow the series.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from llmkernel.models import Names

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
OTHER = "other"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1)
CHUNK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
#: ``llmkernel_gateway_deployment_state`` values
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}

__all__ = [
    "BREAKER_STATES",
    "MULTIPROC_ENV",
    "OTHER",
    "Labels",
    "Metrics",
]


class Labels:
    """Label values from the kernel's :class:`~llmkernel.models.Names`."""

    def __init__(self, names: Names) -> None:
        self.names = names

    def deployment(self, provider: str, model: str) -> tuple[str, str]:
        """``(provider, model)`` of a deployment that was tried: as they are when
        the config defines it; else ``model`` is ``other`` (and ``provider`` too,
        unless it is a provider instance)."""
        if self.names.deployment(provider, model) is not None:
            return provider, model
        return (provider if self.names.provider(provider) else OTHER), OTHER

    def requested(self, model: str) -> tuple[str, str]:
        """``(provider, model)`` of a call that ended before any attempt, from the
        model string the client sent: an alias is ``("", alias)``."""
        if model in self.names.aliases:
            return "", model
        provider, _, name = model.partition("/")
        if provider and name:
            return self.deployment(provider, name)
        return "", OTHER

    def split(self, key: str) -> tuple[str, str]:
        """A ``kernel.stats()`` deployment key (``provider/model`` or ``other``)."""
        provider, _, model = key.partition("/")
        return self.deployment(provider, model) if model else (OTHER, OTHER)


def _today() -> datetime.date:
    return datetime.datetime.now(datetime.UTC).date()


class Metrics:
    """The gateway's metrics. Per request: ``route`` (chat, stream, embeddings),
    ``provider`` and ``model`` (the deployment that answered or failed last),
    ``key`` (the key's name, never the secret)."""

    def __init__(self, labels: Labels | None = None) -> None:
        import prometheus_client as pc

        pc.disable_created_metrics()  # type: ignore[no-untyped-call] # no *_created series: half the scrape size
        self._pc = pc
        self.labels = labels
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self.registry: Any = None if self.multiprocess else pc.CollectorRegistry()
        reg = self.registry
        live_sum: dict[str, Any] = {"multiprocess_mode": "livesum"} if self.multiprocess else {}
        live_max: dict[str, Any] = {"multiprocess_mode": "livemax"} if self.multiprocess else {}
        live_min: dict[str, Any] = {"multiprocess_mode": "livemin"} if self.multiprocess else {}
        deployment = ["provider", "model"]

        def counter(name: str, doc: str, labels: list[str]) -> Any:
            return pc.Counter(name, doc, labels, registry=reg)

        def histogram(name: str, doc: str, labels: list[str], buckets: tuple[float, ...]) -> Any:
            return pc.Histogram(name, doc, labels, buckets=buckets, registry=reg)

        def gauge(name: str, doc: str, labels: list[str], mode: dict[str, Any]) -> Any:
            return pc.Gauge(name, doc, labels, registry=reg, **mode)

        self.requests = counter(
            "llmkernel_gateway_requests",
            "Requests answered, by route, provider, model, key and HTTP status.",
            ["route", "provider", "model", "key", "status"],
        )
        self.errors = counter(
            "llmkernel_gateway_errors",
            "Failed requests by error kind.",
            ["route", "provider", "model", "key", "kind"],
        )
        self.latency = histogram(
            "llmkernel_gateway_request_latency_seconds",
            "Time from request to the last byte of the answer.",
            ["route", *deployment],
            LATENCY_BUCKETS,
        )
        self.ttft = histogram(
            "llmkernel_gateway_time_to_first_token_seconds",
            "Streams: time from request to the first event.",
            deployment,
            LATENCY_BUCKETS,
        )
        self.chunk = histogram(
            "llmkernel_gateway_time_per_output_chunk_seconds",
            "Streams: time between two chunks sent to the client, after the first.",
            deployment,
            CHUNK_BUCKETS,
        )
        self.overhead = histogram(
            "llmkernel_gateway_overhead_seconds",
            "The gateway's own time per request: total time minus the time spent in "
            "provider calls (and the waits between retries).",
            ["route"],
            OVERHEAD_BUCKETS,
        )
        self.tokens = counter(
            "llmkernel_gateway_tokens",
            "Tokens by type (input, output, cached_input, reasoning).",
            [*deployment, "key", "type"],
        )
        self.cost = counter(
            "llmkernel_gateway_cost_usd",
            "Cost of answered requests in USD (priced models only).",
            [*deployment, "key"],
        )
        self.cost_today = gauge(
            "llmkernel_gateway_cost_today_usd",
            "Cost of answered requests today (UTC), in USD, by deployment.",
            deployment,
            live_sum,
        )
        self.cache_hits = counter(
            "llmkernel_gateway_cache_hits",
            "Requests answered from the response cache.",
            [*deployment, "key"],
        )
        self.semantic_hits = counter(
            "llmkernel_gateway_cache_semantic_hits",
            "Requests answered by the semantic cache (a part of the cache hits).",
            [*deployment, "key"],
        )
        self.attempts = counter(
            "llmkernel_gateway_attempts",
            "Attempts on a deployment, by outcome (ok, error, refused, cancelled, abandoned).",
            [*deployment, "outcome"],
        )
        self.retries = counter(
            "llmkernel_gateway_retries",
            "Attempts that retried the same deployment after a failure.",
            deployment,
        )
        self.fallbacks = counter(
            "llmkernel_gateway_fallbacks",
            "Calls that left this deployment for the next candidate (failed or refused).",
            deployment,
        )
        self.refusals = counter(
            "llmkernel_gateway_refusals",
            "Attempts or requests refused before anything was sent, by reason (budget, "
            "rate_limit, key_rate_limit, breaker) and scope (the budget's name, the "
            "deployment, the key).",
            ["reason", "scope"],
        )
        self.in_flight = gauge(
            "llmkernel_gateway_in_flight", "Requests being served now.", [], live_sum
        )
        self.deployment_state = gauge(
            "llmkernel_gateway_deployment_state",
            "Circuit breaker per deployment: 0 closed, 1 half-open, 2 open (the worst "
            "of the workers').",
            deployment,
            live_max,
        )
        self.deployment_in_flight = gauge(
            "llmkernel_gateway_deployment_in_flight",
            "Attempts in flight per deployment.",
            deployment,
            live_sum,
        )
        self.cache_lookups = counter(
            "llmkernel_gateway_cache_lookups",
            "Response cache lookups by kind (exact) and result (memory_hit, store_hit, "
            "miss, bypassed).",
            ["kind", "result"],
        )
        # A/B tests: label values are experiment and variant names of the config
        variant = ["experiment", "variant"]
        self.variant_calls = counter(
            "llmkernel_gateway_variant_calls",
            "Calls of an experiment ([models.NAME] variants) by variant and outcome "
            "(ok, error, refused, cancelled, abandoned).",
            [*variant, "outcome"],
        )
        self.variant_latency = histogram(
            "llmkernel_gateway_variant_latency_seconds",
            "Answered calls of an experiment: the kernel's latency, by variant.",
            variant,
            LATENCY_BUCKETS,
        )
        self.variant_tokens = counter(
            "llmkernel_gateway_variant_tokens",
            "Tokens of an experiment's calls by variant and type (input, output).",
            [*variant, "type"],
        )
        self.variant_cost = counter(
            "llmkernel_gateway_variant_cost_usd",
            "Cost of an experiment's calls in USD, by variant (priced models only).",
            variant,
        )
        # made when a plugin first reports shared state (kernel.stats()["redis"])
        self.redis_up: Any = None
        self.redis_errors: Any = None
        self._live_min = live_min
        self._process: _ProcessMirror | None = None
        if self.multiprocess:
            self._process = _ProcessMirror(pc)
        else:
            own: Any = reg
            pc.ProcessCollector(registry=own)
            pc.PlatformCollector(registry=own)
            pc.GCCollector(registry=own)
        self._children: dict[tuple[Any, ...], Any] = {}
        self._mirrored: dict[tuple[str, ...], float] = {}
        self._day = _today()
        self._today_children: set[tuple[str, str]] = set()
        self.extra: list[Any] = []  # scrape-time collectors (build info, budgets)

    def child(self, metric: Any, labels: tuple[str, ...]) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # ------------------------------------------------------------------ requests

    def observe(
        self,
        *,
        route: str,
        provider: str,
        model: str,
        key: str,
        status: int,
        latency: float,
        ttft: float | None = None,
        usage: Any = None,
        cost: Any = None,
        cached: bool = False,
        error_kind: str | None = None,
        upstream: float | None = None,
        semantic: bool = False,
    ) -> None:
        """One request; ``provider`` and ``model`` are label values already."""
        child = self.child
        child(self.requests, (route, provider, model, key, str(status))).inc()
        child(self.latency, (route, provider, model)).observe(latency)
        if upstream is not None:
            child(self.overhead, (route,)).observe(max(0.0, latency - upstream))
        if error_kind is not None:
            child(self.errors, (route, provider, model, key, error_kind)).inc()
            return
        if ttft is not None:
            child(self.ttft, (provider, model)).observe(ttft)
        if usage is not None:
            for kind, value in (
                ("input", usage.input_tokens),
                ("output", usage.output_tokens),
                ("cached_input", usage.cached_input_tokens),
                ("reasoning", usage.reasoning_tokens),
            ):
                if value:
                    child(self.tokens, (provider, model, key, kind)).inc(value)
        if cost is not None:
            child(self.cost, (provider, model, key)).inc(float(cost))
            self._add_today((provider, model), cost)
        if cached:
            child(self.cache_hits, (provider, model, key)).inc()
            if semantic:
                child(self.semantic_hits, (provider, model, key)).inc()

    def _add_today(self, deployment: tuple[str, str], cost: Decimal) -> None:
        today = _today()
        if today != self._day:  # a new UTC day: every deployment starts at zero
            self._day = today
            for labels in self._today_children:
                self.child(self.cost_today, labels).set(0)
        self._today_children.add(deployment)
        self.child(self.cost_today, deployment).inc(float(cost))

    def refused(self, reason: str, scope: str) -> None:
        self.child(self.refusals, (reason, scope)).inc()

    def variant(self, experiment: str, variant: str, outcome: Any) -> None:
        """One call of an experiment (``experiment`` and ``variant`` come from the
        config: the kernel assigns a variant only to a configured experiment)."""
        labels = (experiment, variant)
        self.child(self.variant_calls, (*labels, str(outcome.status))).inc()
        if outcome.status == "ok":
            self.child(self.variant_latency, labels).observe(float(outcome.latency))
        usage = outcome.usage
        if usage is not None:
            for kind, value in (("input", usage.input_tokens), ("output", usage.output_tokens)):
                if value:
                    self.child(self.variant_tokens, (*labels, kind)).inc(value)
        if outcome.cost is not None:
            self.child(self.variant_cost, labels).inc(float(outcome.cost))

    # ------------------------------------------------------------------ mirrors

    def refresh(self, kernel_stats: Mapping[str, Any]) -> None:
        """Copy what this worker's plugins report (``kernel.stats()``) into the
        metrics: breaker states, attempts in flight, cache lookups, Redis; and, with
        several workers, this process's figures."""
        labels = self.labels
        if labels is not None:
            deployments = kernel_stats.get("deployments")
            for name, row in (deployments or {}).items():
                if not isinstance(row, Mapping) or "/" not in name:
                    continue  # "other" has no breaker; its in-flight count is noise
                deployment = labels.split(name)
                if deployment[1] == OTHER:
                    continue
                breaker = row.get("breaker")
                state = breaker.get("state") if isinstance(breaker, Mapping) else None
                if state in BREAKER_STATES:
                    self.child(self.deployment_state, deployment).set(BREAKER_STATES[state])
                in_flight = row.get("in_flight")
                if isinstance(in_flight, int):
                    self.child(self.deployment_in_flight, deployment).set(in_flight)
        cache = kernel_stats.get("cache")
        if isinstance(cache, Mapping):
            hits, memory = int(cache.get("hits") or 0), int(cache.get("memory_hits") or 0)
            for result, total in (
                ("memory_hit", memory),
                ("store_hit", hits - memory),
                ("miss", int(cache.get("misses") or 0)),
                ("bypassed", int(cache.get("bypassed") or 0)),
            ):
                self._mirror_counter(self.child(self.cache_lookups, ("exact", result)), total)
        redis = kernel_stats.get("redis")
        if isinstance(redis, Mapping):
            if self.redis_up is None:
                self._redis_metrics()
            connected = redis.get("connected")
            if isinstance(connected, bool):
                self.redis_up.set(1 if connected else 0)
            errors = redis.get("errors")
            if isinstance(errors, int):
                self._mirror_counter(self.redis_errors, errors)
        if self._process is not None:
            self._process.refresh(self)

    def _redis_metrics(self) -> None:
        pc = self._pc
        self.redis_up = pc.Gauge(
            "llmkernel_gateway_redis_up",
            "Shared state: 1 when every worker reaches Redis, 0 when one runs degraded.",
            registry=self.registry,
            **self._live_min,
        )
        self.redis_errors = pc.Counter(
            "llmkernel_gateway_redis_errors",
            "Shared state: failed Redis operations.",
            registry=self.registry,
        )

    def _mirror_counter(self, child: Any, total: float) -> None:
        """Bring a counter up to a cumulative ``total`` reported elsewhere."""
        key = ("c", str(id(child)))
        seen = self._mirrored.get(key, 0.0)
        if total > seen:
            child.inc(total - seen)
        self._mirrored[key] = max(seen, total)

    # ------------------------------------------------------------------ output

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        pc = self._pc
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = pc.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            pc.PlatformCollector(registry=registry)  # python_info: the same in every worker
        else:
            registry = self.registry
        for collector in self.extra:
            registry.register(collector)
        try:
            return pc.generate_latest(registry), pc.CONTENT_TYPE_LATEST
        finally:
            for collector in self.extra:
                registry.unregister(collector)

    def families(self) -> Iterator[Any]:
        """Every metric family, as a scrape sees it (the status page reads them)."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            yield from multiprocess.MultiProcessCollector(None).collect()  # type: ignore[no-untyped-call]
        else:
            yield from self.registry.collect()

    def close(self) -> None:
        """A worker that exits marks itself dead, so live gauges drop its values."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class _ProcessMirror:
    """With several workers, the process and Python collectors' figures of each
    worker, summed over the workers (memory, CPU, file descriptors, GC counts)."""

    def __init__(self, pc: Any) -> None:
        self._source = pc.CollectorRegistry()  # this worker's own figures, read here
        pc.ProcessCollector(registry=self._source)
        pc.GCCollector(registry=self._source)
        self._pc = pc
        self._metrics: dict[str, Any] = {}

    def refresh(self, metrics: Metrics) -> None:
        for family in self._source.collect():
            metric = self._metrics.get(family.name)
            if metric is None:
                metric = self._metrics[family.name] = self._make(family)
            counter = family.type == "counter"
            for sample in family.samples:
                if counter and not sample.name.endswith("_total"):
                    continue
                labels = sample.labels
                child = metric.labels(**labels) if labels else metric
                if counter:
                    metrics._mirror_counter(child, sample.value)
                else:
                    child.set(sample.value)

    def _make(self, family: Any) -> Any:
        pc = self._pc
        labels = sorted({k for s in family.samples for k in s.labels})
        if family.type == "counter":
            return pc.Counter(family.name, family.documentation, labels, registry=None)
        mode = {"process_start_time_seconds": "livemin", "process_max_fds": "livemax"}
        return pc.Gauge(
            family.name,
            family.documentation,
            labels,
            registry=None,
            multiprocess_mode=mode.get(family.name, "livesum"),
        )


def build_info(plugins: list[tuple[str, str | None, str | None]]) -> Any:
    """A scrape-time collector: ``llmkernel_build_info`` (the versions of the
    kernel, the gateway and Python) and ``llmkernel_plugin_info`` per loaded plugin."""
    from importlib.metadata import PackageNotFoundError, version

    from prometheus_client.core import GaugeMetricFamily

    def dist(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "unknown"

    build = {
        "version": dist("llmkernel"),
        "gateway_version": dist("llmkernel-gateway"),
        "python_version": platform.python_version(),
        "implementation": sys.implementation.name,
    }

    class BuildInfo:
        def collect(self) -> Iterator[Any]:
            info = GaugeMetricFamily(
                "llmkernel_build_info",
                "The versions this gateway runs: llmkernel, the gateway, Python.",
                labels=list(build),
            )
            info.add_metric(list(build.values()), 1)
            yield info
            loaded = GaugeMetricFamily(
                "llmkernel_plugin_info",
                "The plugins loaded in the gateway's kernel, with their distributions.",
                labels=["name", "distribution", "version"],
            )
            for name, distribution, plugin_version in plugins:
                loaded.add_metric([name, distribution or "", plugin_version or ""], 1)
            yield loaded

    return BuildInfo()


def redis_collector(kernel: Any) -> Any:
    """A scrape-time collector of the shared Redis's links (``[redis]`` set):
    ``llmkernel_redis_up`` (1 ok, 0 degraded), ``llmkernel_redis_outages_total`` and
    ``llmkernel_redis_failures_total`` per link, as this worker sees them; ``None``
    without ``[redis]``."""
    if not getattr(kernel.config, "redis", None):
        return None
    try:
        from llmkernel_redis.shared import shared_for
    except ImportError:
        return None
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    class RedisLinks:
        def collect(self) -> Iterator[Any]:
            shared = shared_for(kernel)
            stats = shared.stats() if shared is not None else {}
            links = {"main": stats}
            if isinstance(stats.get("cache"), dict):
                links["cache"] = stats["cache"]
            up = GaugeMetricFamily(
                "llmkernel_redis_up",
                "Whether the shared Redis answers (1) or the link is degraded (0).",
                labels=["link"],
            )
            outages = CounterMetricFamily(
                "llmkernel_redis_outages",
                "Times the link turned degraded (the gateway fell back to local state).",
                labels=["link"],
            )
            failures = CounterMetricFamily(
                "llmkernel_redis_failures", "Redis calls that failed or timed out.", labels=["link"]
            )
            for name, link in links.items():
                if "state" not in link:
                    continue
                up.add_metric([name], 1.0 if link["state"] == "ok" else 0.0)
                outages.add_metric([name], float(link.get("outages", 0)))
                failures.add_metric([name], float(link.get("failures", 0)))
            yield up
            yield outages
            yield failures

    return RedisLinks()
