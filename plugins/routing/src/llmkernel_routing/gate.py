"""The routing gate: the circuit breaker and the in-flight count of every attempt."""

from __future__ import annotations

from typing import Any

from llmkernel.errors import LLMKernelError, RefusedError
from llmkernel_routing.state import Routing

_CLAIM = "llmkernel_routing.claim"


class RoutingGate:
    """``acquire`` lets an attempt through its deployment's breaker (the single
    half-open probe, the fleet's single one with ``[redis]``, or nothing while
    open) and counts it in flight; ``release`` tells the breaker how it ended."""

    def __init__(self, routing: Routing, kernel: Any) -> None:
        self.routing = routing
        self.kernel = kernel

    async def acquire(self, ctx: Any, attempt: Any) -> None:
        routing = self.routing
        if routing.settings.health_interval > 0:
            routing.start_health_checks(self.kernel)
        candidate = attempt.candidate
        claim = routing.enter(candidate)
        if claim == "probe" and not await routing.claim_probe(candidate):
            claim = None  # another instance of the fleet sends it
        if claim is None:
            breaker = routing.breaker_for(candidate)
            why = breaker.reason or "half-open, probe in flight"
            if breaker.elsewhere:
                why = f"half-open, probe in flight on another instance; {why}"
            raise RefusedError(
                f"circuit breaker open ({why})",
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
            error=f"{type(error).__name__}: {error}" if error is not None else "",
        )

    async def aclose(self) -> None:
        await self.routing.aclose()


class DeploymentUnavailable(LLMKernelError):
    """Why a filter left a deployment out: its breaker is open (``kind`` ``breaker``,
    ``retry_after`` the rest of the cooldown when known) or its health check failed
    (``health``). Carried as ``Drop.error``, so whoever reports a call with no
    candidate left (the gateway's 502) can tell a dead upstream from a request no
    deployment can serve. Not a refusal: no attempt was made."""

    def __init__(self, message: str, *, kind: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


def unavailable(routing: Routing, candidate: Any, reason: str) -> DeploymentUnavailable | None:
    """The error of a filter's drop for ``reason``, when the deployment is down."""
    if reason.startswith("circuit breaker"):
        return DeploymentUnavailable(
            reason, kind="breaker", retry_after=routing.retry_after(candidate)
        )
    if reason.startswith("health check failed"):
        return DeploymentUnavailable(reason, kind="health")
    return None


__all__ = ["DeploymentUnavailable", "RoutingGate", "unavailable"]
