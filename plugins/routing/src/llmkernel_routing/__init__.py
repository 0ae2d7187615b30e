"""Shared routing machinery for llmkernel: live per-deployment statistics, the
circuit breaker, capability and context-window filters, metrics with bounded
percentile sketches, and the ``llmkernel stats`` command.

Strategy packages read from it::

    from llmkernel_routing import routing_for

    stats = routing_for(kernel).stats_for(candidate)
    stats.in_flight, stats.ewma_latency, stats.ewma_ttft

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "Breaker": "llmkernel_routing.breaker",
    "BreakerSettings": "llmkernel_routing.breaker",
    "DeploymentStats": "llmkernel_routing.stats",
    "Routing": "llmkernel_routing.state",
    "RoutingSettings": "llmkernel_routing.settings",
    "Sketch": "llmkernel_routing.sketch",
    "Timeline": "llmkernel_routing.stats",
    "deployment_key": "llmkernel_routing.state",
    "missing": "llmkernel_routing.needs",
    "request_needs": "llmkernel_routing.needs",
    "routing_for": "llmkernel_routing.state",
}

if TYPE_CHECKING:
    from llmkernel_routing.breaker import Breaker, BreakerSettings
    from llmkernel_routing.needs import missing, request_needs
    from llmkernel_routing.settings import RoutingSettings
    from llmkernel_routing.sketch import Sketch
    from llmkernel_routing.state import Routing, deployment_key, routing_for
    from llmkernel_routing.stats import DeploymentStats, Timeline


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Breaker",
    "BreakerSettings",
    "DeploymentStats",
    "Routing",
    "RoutingSettings",
    "Sketch",
    "Timeline",
    "deployment_key",
    "missing",
    "request_needs",
    "routing_for",
]
