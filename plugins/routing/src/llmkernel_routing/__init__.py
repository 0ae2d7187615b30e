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

from typing import TYPE_CHECKING

from llmkernel.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "llmkernel_routing.breaker": ["Breaker", "BreakerSettings"],
        "llmkernel_routing.stats": ["DeploymentStats", "Timeline"],
        "llmkernel_routing.state": ["Routing", "deployment_key", "routing_for"],
        "llmkernel_routing.settings": ["RoutingSettings"],
        "llmkernel_routing.sketch": ["Sketch"],
        "llmkernel_routing.needs": ["missing", "request_needs"],
    },
)

if TYPE_CHECKING:
    from llmkernel_routing.breaker import Breaker, BreakerSettings
    from llmkernel_routing.needs import missing, request_needs
    from llmkernel_routing.settings import RoutingSettings
    from llmkernel_routing.sketch import Sketch
    from llmkernel_routing.state import Routing, deployment_key, routing_for
    from llmkernel_routing.stats import DeploymentStats, Timeline


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
