"""Prometheus metrics with the official ``prometheus-client``, imported on first use.

One process: metrics live in a private registry. Several workers (``--workers N``):
``PROMETHEUS_MULTIPROC_DIR`` is set before the workers start, each writes its
values to files there, and ``/metrics`` in any worker reads them all (the library's
multiprocess mode), so a scrape sees the whole server.
"""

from __future__ import annotations

import os
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """The gateway's counters and histograms. Labels: ``route`` (chat, stream,
    embeddings), ``provider`` and ``model`` (what answered), ``key`` (the key's name,
    never the secret)."""

    def __init__(self) -> None:
        import prometheus_client as pc

        pc.disable_created_metrics()  # type: ignore[no-untyped-call] # no *_created series: half the scrape size
        self._pc = pc
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self.registry: Any = None if self.multiprocess else pc.CollectorRegistry()
        reg = self.registry
        self.requests = pc.Counter(
            "llmkernel_gateway_requests",
            "Requests answered, by route, provider, model, key and HTTP status.",
            ["route", "provider", "model", "key", "status"],
            registry=reg,
        )
        self.errors = pc.Counter(
            "llmkernel_gateway_errors",
            "Failed requests by error kind.",
            ["route", "provider", "model", "key", "kind"],
            registry=reg,
        )
        self.latency = pc.Histogram(
            "llmkernel_gateway_request_latency_seconds",
            "Time from request to the last byte of the answer.",
            ["route", "provider", "model"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.ttft = pc.Histogram(
            "llmkernel_gateway_time_to_first_token_seconds",
            "Streams: time from request to the first event.",
            ["provider", "model"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.tokens = pc.Counter(
            "llmkernel_gateway_tokens",
            "Tokens by type (input, output, cached_input, reasoning).",
            ["provider", "model", "key", "type"],
            registry=reg,
        )
        self.cost = pc.Counter(
            "llmkernel_gateway_cost_usd",
            "Cost of answered requests in USD (priced models only).",
            ["provider", "model", "key"],
            registry=reg,
        )
        self.cache_hits = pc.Counter(
            "llmkernel_gateway_cache_hits",
            "Requests answered from the response cache.",
            ["provider", "model", "key"],
            registry=reg,
        )
        self.semantic_hits = pc.Counter(
            "llmkernel_gateway_cache_semantic_hits",
            "Requests answered by the semantic cache (a part of the cache hits).",
            ["provider", "model", "key"],
            registry=reg,
        )
        gauge_kw: dict[str, Any] = {"multiprocess_mode": "livesum"} if self.multiprocess else {}
        self.in_flight = pc.Gauge(
            "llmkernel_gateway_in_flight",
            "Requests being served now.",
            registry=reg,
            **gauge_kw,
        )
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, labels: tuple[str, ...]) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

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
        semantic: bool = False,
    ) -> None:
        child = self._child
        child(self.requests, (route, provider, model, key, str(status))).inc()
        child(self.latency, (route, provider, model)).observe(latency)
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
        if cached:
            child(self.cache_hits, (provider, model, key)).inc()
            if semantic:
                child(self.semantic_hits, (provider, model, key)).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        pc = self._pc
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = pc.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return pc.generate_latest(registry), pc.CONTENT_TYPE_LATEST
        return pc.generate_latest(self.registry), pc.CONTENT_TYPE_LATEST

    def close(self) -> None:
        """A worker that exits marks itself dead, so live gauges drop its values."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


__all__ = ["MULTIPROC_ENV", "Metrics"]
