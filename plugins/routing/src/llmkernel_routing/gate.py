"""The routing gate: the circuit breaker and the in-flight count of every attempt."""

from __future__ import annotations

from typing import Any

from llmkernel.errors import RefusedError
from llmkernel_routing.state import Routing

_CLAIM = "llmkernel_routing.claim"


class RoutingGate:
    """``acquire`` lets an attempt through its deployment's breaker (the single
    half-open probe, or nothing while open) and counts it in flight; ``release``
    tells the breaker how it ended."""

    def __init__(self, routing: Routing, kernel: Any) -> None:
        self.routing = routing
        self.kernel = kernel

    async def acquire(self, ctx: Any, attempt: Any) -> None:
        routing = self.routing
        if routing.settings.health_interval > 0:
            routing.start_health_checks(self.kernel)
        candidate = attempt.candidate
        claim = routing.enter(candidate)
        if claim is None:
            breaker = routing.breaker_for(candidate)
            raise RefusedError(
                f"circuit breaker open ({breaker.reason or 'half-open, probe in flight'})",
                kind="breaker",
                retry_after=routing.retry_after(candidate),
                provider=candidate.provider,
                model=candidate.model,
            )
        attempt.state[_CLAIM] = claim

    def release(self, ctx: Any, attempt: Any, outcome: Any) -> None:
        claim = attempt.state.pop(_CLAIM, None)
        if claim is None:
            return
        error = outcome.error
        self.routing.leave(
            attempt.candidate,
            claim,
            status=outcome.status,
            kind=str(getattr(error, "kind", "") or "") if error is not None else "",
            retry_after=getattr(error, "retry_after", None),
        )

    async def aclose(self) -> None:
        await self.routing.aclose()


__all__ = ["RoutingGate"]
