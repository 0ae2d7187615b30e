"""``[plugin.routing]``: the shared routing machinery's settings."""

from __future__ import annotations

import attrs

from llmkernel_routing.breaker import BreakerSettings


@attrs.frozen(kw_only=True)
class RoutingSettings:
    """Every key is optional; times in seconds."""

    #: Drop candidates lacking a capability the request needs (tools, images, JSON
    #: schema, reasoning), as the provider declares it.
    capabilities: bool = True
    #: Drop candidates whose context window cannot hold the counted prompt plus
    #: ``max_tokens`` (``reserve_output`` tokens when the request sets none).
    context_window: bool = True
    reserve_output: int = 256
    #: Weight of the newest sample in the latency and time-to-first-token EWMAs.
    ewma_alpha: float = 0.3
    #: A failed attempt feeds the latency EWMA at least this many seconds, so a
    #: deployment that fails fast does not look fast.
    failure_penalty: float = 2.0
    #: Seconds between active health checks (``provider.health()``); 0 is off.
    health_interval: float = 0.0
    health_timeout: float = 5.0
    #: Minutes of per-minute timeline kept.
    timeline_minutes: int = 60
    #: with ``[redis]``: breakers shared by the fleet (:mod:`llmkernel_routing.fleet`)
    shared: bool = True
    breaker: BreakerSettings = attrs.field(factory=BreakerSettings)

    def __attrs_post_init__(self) -> None:
        if not 0.0 < self.ewma_alpha <= 1.0:
            raise ValueError("ewma_alpha must be in (0, 1]")
        if self.health_interval < 0 or self.health_timeout <= 0:
            raise ValueError("health_interval must be >= 0 and health_timeout > 0")
        if not 1 <= self.timeline_minutes <= 24 * 60:
            raise ValueError("timeline_minutes must be between 1 and 1440")
        if self.reserve_output < 0:
            raise ValueError("reserve_output must not be negative")


__all__ = ["RoutingSettings"]
