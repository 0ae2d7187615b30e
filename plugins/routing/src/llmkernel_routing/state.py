"""The routing state of one kernel: statistics, breakers, health; and the filters.

One :class:`Routing` per kernel (see :func:`routing_for`), fed by the plugin's hooks
and read by strategy packages::

    from llmkernel_routing import routing_for

    stats = routing_for(kernel).stats_for(candidate)  # DeploymentStats
    stats.in_flight, stats.ewma_latency, stats.ewma_ttft
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import attrs

from llmkernel import log
from llmkernel_routing.breaker import Breaker, Verdict
from llmkernel_routing.needs import missing, request_needs
from llmkernel_routing.settings import RoutingSettings
from llmkernel_routing.stats import CallTotals, DeploymentStats, Minute

if TYPE_CHECKING:
    import asyncio

    from llmkernel_routing.fleet import FleetBreakers

Claim = Literal[True, "probe"]

#: The one key every deployment the configuration does not define shares: a client
#: choosing new model names cannot grow the state (no breaker is kept for it).
OTHER = "other"


def deployment_key(candidate: Any) -> str:
    """``provider/model`` of a candidate."""
    return f"{candidate.provider}/{candidate.model}"


@attrs.frozen(kw_only=True)
class HealthResult:
    ok: bool
    detail: str
    at: float  # monotonic
    latency: float = 0.0
    by: str = ""  # the fleet's instance that got it ('' for this one)


#: Tokens an image can take at most (high detail, large images), per provider docs.
_IMAGE_TOKENS_MAX = 6400
#: Message framing (role markers, separators) at most, per message.
_MESSAGE_TOKENS_MAX = 16


def _utf8_length(text: str) -> int:
    # ASCII text (a flag on the string, no scan): one byte a character, no copy
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def token_ceiling(request: Any) -> int:
    """An upper bound of a chat request's input tokens without a tokenizer: a token
    is at least one UTF-8 byte of text (images and framing counted generously)."""
    total = 0
    for message in request.messages:
        total += _MESSAGE_TOKENS_MAX
        for part in message.content:
            text = getattr(part, "text", None)
            if isinstance(text, str):
                total += _utf8_length(text)
            else:
                total += _IMAGE_TOKENS_MAX
        for call in message.tool_calls:
            total += len(call.name) + len(call.arguments_json.encode("utf-8")) + 8
    for tool in request.tools:
        total += len(tool.name) + len(tool.description.encode("utf-8")) + 16
        total += len(json.dumps(tool.parameters, ensure_ascii=False).encode("utf-8"))
    return total


@attrs.define(kw_only=True, eq=False)
class Routing:
    """Statistics, breakers and health of one kernel's deployments.

    State is kept per deployment the kernel's configuration defines (``names``, a
    :class:`llmkernel.models.Names`: alias targets and the models providers
    declare); every other ``provider/model`` a client sends counts under
    :data:`OTHER`. Without ``names`` (plain data, tests) every deployment is kept."""

    settings: RoutingSettings = attrs.field(factory=RoutingSettings)
    names: Any = None
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    deployments: dict[str, DeploymentStats] = attrs.field(factory=dict)
    breakers: dict[str, Breaker] = attrs.field(factory=dict)
    calls: CallTotals = attrs.field(factory=CallTotals)
    health: dict[str, HealthResult] = attrs.field(factory=dict)
    lock: threading.Lock = attrs.field(factory=threading.Lock)
    _health_task: asyncio.Task[None] | None = None
    #: the fleet's breakers (``[redis]``), or ``None``
    fleet: FleetBreakers | None = None

    # ------------------------------------------------------------------ access

    def key_of(self, candidate: Any) -> str:
        """The state key of a candidate: ``provider/model`` when the configuration
        defines it, else :data:`OTHER` (a ``str`` is taken as a key already)."""
        if isinstance(candidate, str):
            return candidate
        names = self.names
        if names is None:
            return deployment_key(candidate)
        known: str | None = names.deployment(candidate.provider, candidate.model)
        return known if known is not None else OTHER

    def stats_for(self, candidate: Any) -> DeploymentStats:
        """The live statistics of a candidate (or a ``"provider/model"`` key); the
        shared :data:`OTHER` ones for a deployment the configuration does not define."""
        key = self.key_of(candidate)
        stats = self.deployments.get(key)
        if stats is None:
            stats = self.deployments.setdefault(key, DeploymentStats(key=key))
            stats.timeline.minutes = self.settings.timeline_minutes
        return stats

    def breaker_for(self, candidate: Any) -> Breaker:
        key = self.key_of(candidate)
        breaker = self.breakers.get(key)
        if breaker is None:
            breaker = self.breakers.setdefault(key, Breaker(settings=self.settings.breaker))
        return breaker

    def healthy(self, candidate: Any, recent: float | None = None) -> bool:
        """Neither open in the breaker nor failing its last active health check, and
        no failure since its last success (within the last ``recent`` seconds when
        given): what local-first reads."""
        key = self.key_of(candidate)
        breaker = self.breakers.get(key)
        if breaker is not None and breaker.current(self.clock()) != "closed":
            return False
        check = self.health.get(candidate.provider)
        if check is not None and not check.ok:
            return False
        stats = self.deployments.get(key)
        if key == OTHER or stats is None or stats.last_error is None:
            return True
        failed_at = stats.last_error["at"]
        if recent is not None and self.wall() - failed_at > recent:
            return True
        return stats.last_success_at is not None and stats.last_success_at >= failed_at

    # ------------------------------------------------------------------ gate

    def enter(self, candidate: Any) -> Claim | None:
        """Let an attempt through the breaker (and count it in flight), or ``None``
        when the breaker skips this deployment."""
        key = self.key_of(candidate)
        claim: Claim | Literal[False] = True
        if self.fleet is not None:
            self.fleet.started(self)
        if self.settings.breaker.enabled and key != OTHER:
            breaker = self.breakers.get(key)
            # closed lets everything through and changes nothing: no lock needed
            if breaker is None or breaker.state != "closed":
                with self.lock:
                    claim = self.breaker_for(key).acquire(self.clock())
        if claim is False:
            return None
        self.stats_for(key).in_flight += 1
        return claim

    async def claim_probe(self, candidate: Any) -> bool:
        """After :meth:`enter` gave ``"probe"``: whether this instance sends it. With
        a fleet, the one instance that wins the claim does; on the others the
        attempt is taken back and the deployment skipped until the fleet's probe
        has a result (or its claim expired)."""
        fleet = self.fleet
        if fleet is None:
            return True
        key = self.key_of(candidate)
        timeout = self.settings.breaker.probe_timeout
        breaker = self.breaker_for(key)

        def probing() -> bool:  # this instance's probe still runs
            return breaker.state == "half_open" and breaker.probe and not breaker.elsewhere

        if await fleet.claim(key, timeout, probing):
            return True
        with self.lock:
            breaker.wait_for_fleet(self.clock(), timeout)
        stats = self.stats_for(key)
        stats.in_flight = max(0, stats.in_flight - 1)
        return False

    def leave(
        self,
        candidate: Any,
        claim: Claim,
        *,
        status: str,
        kind: str = "",
        retry_after: float | None = None,
        error: str = "",
    ) -> None:
        """The attempt let through by :meth:`enter` ended (once, however)."""
        key = self.key_of(candidate)
        stats = self.stats_for(key)
        stats.in_flight = max(0, stats.in_flight - 1)
        if not self.settings.breaker.enabled or key == OTHER:
            return
        with self.lock:
            breaker = self.breaker_for(key)
            verdict: Verdict
            if status in ("ok", "abandoned"):
                verdict = "success"
            elif status == "error" and kind:
                verdict = breaker.failure_verdict(kind)
            else:
                verdict = "none"
            before = breaker.state
            breaker.release(
                self.clock(),
                verdict,
                probe=claim == "probe",
                kind=kind,
                retry_after=retry_after,
                error=error,
            )
            after = breaker.state
        fleet = self.fleet
        if fleet is not None:
            if before != after and after == "open":
                fleet.opened(key, breaker)
            elif claim == "probe" and after == "closed":
                fleet.closed(key)
            elif claim == "probe" and after == "half_open":
                fleet.released(key)  # no verdict: another instance may probe
        if before != after:
            log.info(
                "routing.breaker." + ("closed" if after == "closed" else "opened"),
                deployment=key,
                reason=breaker.reason,
                cooldown=breaker.cooldown,
            )

    def retry_after(self, candidate: Any) -> float | None:
        with self.lock:
            return self.breaker_for(candidate).retry_after(self.clock())

    # ------------------------------------------------------------------ end hooks

    def attempt_ended(
        self,
        candidate: Any,
        *,
        status: str,
        stream: bool = False,
        kind: str = "",
        message: str = "",
        latency: float | None = None,
        first_event_latency: float | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost: Decimal | None = None,
    ) -> None:
        """One attempt ended: count it, and feed the latency EWMAs."""
        stats = self.stats_for(candidate)
        stats.record(
            status=status,
            wall=self.wall(),
            kind=kind,
            message=message,
            latency=latency,
            first_event_latency=first_event_latency,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost=cost,
        )
        alpha, now = self.settings.ewma_alpha, self.clock()
        if status == "ok":
            if stream:
                if first_event_latency is not None:
                    stats.feed_ttft(first_event_latency, alpha, now)
            elif latency is not None:
                stats.feed_latency(latency, alpha, now)
        elif status == "error" and kind in self.settings.breaker.kinds:
            slow = max(latency or 0.0, self.settings.failure_penalty)
            if stream and first_event_latency is None:
                stats.feed_ttft(slow, alpha, now)
            if not stream:
                stats.feed_latency(slow, alpha, now)

    # ------------------------------------------------------------------ filters

    def drop_reasons(self, ctx: Any, candidates: Iterable[Any]) -> list[tuple[Any, str]]:
        """The candidates to drop before any strategy, each with its reason: an open
        breaker, a failed health check, a missing capability, a context window too
        small for the counted prompt plus ``max_tokens``.

        The prompt is counted only when a byte a token (an upper bound of any
        tokenizer's count, :func:`token_ceiling`) does not already fit the window."""
        settings = self.settings
        request = getattr(ctx, "request", None)
        kernel = getattr(ctx, "kernel", None)
        chat = getattr(ctx, "kind", "chat") in ("chat", "stream")
        needed = request_needs(request) if settings.capabilities and chat else ()
        fit = kernel is not None and chat and bool(needed or settings.context_window)
        breakers = self.breakers if settings.breaker.enabled else None
        health = self.health
        now: float | None = None
        ceiling = -1  # counted once a call, when first needed
        drops: list[tuple[Any, str]] = []
        for candidate in candidates:
            if breakers:
                breaker = breakers.get(self.key_of(candidate))
                if breaker is not None and breaker.state != "closed":
                    if now is None:
                        now = self.clock()
                    with self.lock:
                        available = breaker.available(now)
                        state = breaker.current(now)
                    if not available:
                        if state != "half_open":
                            why = f"circuit breaker open ({breaker.reason})"
                        elif breaker.elsewhere:
                            why = "circuit breaker half-open, probe in flight on another instance"
                        else:
                            why = "circuit breaker half-open, probe in flight"
                        self._skipped(candidate, "breaker")
                        drops.append((candidate, why))
                        continue
            if health:
                check = health.get(candidate.provider)
                if check is not None and not check.ok:
                    self._skipped(candidate, "health")
                    drops.append((candidate, f"health check failed: {check.detail}"))
                    continue
            if not fit:
                continue
            capabilities = _capabilities(kernel, candidate)
            if capabilities is None:
                continue  # unknown: given the benefit of the doubt
            lacks = missing(capabilities, needed) if needed else None
            if lacks:
                self._skipped(candidate, "capability")
                drops.append((candidate, f"lacks {', '.join(lacks)}"))
                continue
            window = capabilities.context_window
            if settings.context_window and window:
                asked = getattr(request, "max_tokens", None)
                output = asked if asked is not None else settings.reserve_output
                if ceiling < 0:
                    ceiling = token_ceiling(request)
                if ceiling + output <= window:
                    continue  # fits even at a byte a token: no need to count
                prompt = ctx.input_tokens(candidate)
                if prompt + output > window:
                    self._skipped(candidate, "context_window")
                    drops.append(
                        (
                            candidate,
                            f"context window {window} too small for {prompt} prompt + "
                            f"{output} output tokens",
                        )
                    )
        for candidate, reason in drops:
            log.debug("routing.dropped", deployment=self.key_of(candidate), reason=reason)
        return drops

    def _skipped(self, candidate: Any, why: str) -> None:
        counts = self.stats_for(candidate).skipped
        counts[why] = counts.get(why, 0) + 1

    # ------------------------------------------------------------------ health

    def start_health_checks(self, kernel: Any) -> None:
        """Start the active health checks in the running loop, once (when
        ``health_interval`` is set)."""
        import asyncio

        if self.settings.health_interval <= 0:
            return
        task = self._health_task
        if task is not None and not task.done():
            return
        self._health_task = asyncio.get_running_loop().create_task(self._health_loop(kernel))

    async def check_health(self, kernel: Any) -> dict[str, HealthResult]:
        """One round of ``provider.health()`` over every configured provider."""
        import asyncio

        providers: Mapping[str, Any] = kernel.providers()
        timeout = self.settings.health_timeout

        async def one(name: str, provider: Any) -> None:
            started = self.clock()
            try:
                async with asyncio.timeout(timeout):
                    health = await provider.health()
                result = HealthResult(
                    ok=bool(health.ok),
                    detail=str(health.detail),
                    at=self.clock(),
                    latency=float(health.latency or self.clock() - started),
                )
            except Exception as exc:  # a failing check is a result, not a crash
                detail = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
                result = HealthResult(ok=False, detail=detail, at=self.clock())
            before = self.health.get(name)
            self.health[name] = result
            if before is None or before.ok != result.ok:
                log.info(
                    "routing.health.changed", provider=name, ok=result.ok, detail=result.detail
                )

        await asyncio.gather(*(one(n, p) for n, p in providers.items()))
        if self.fleet is not None:
            # kept in Redis for three rounds: a stopped checker's results fade
            settings = self.settings
            ttl = 3 * (settings.health_interval + settings.health_timeout)
            self.fleet.health_checked(self.health, ttl)
        return dict(self.health)

    async def _health_loop(self, kernel: Any) -> None:
        import asyncio

        while True:
            try:
                await self.check_health(kernel)
            except Exception as exc:
                log.warning("routing.health.failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self.settings.health_interval)

    async def aclose(self) -> None:
        import asyncio

        if self.fleet is not None:
            await self.fleet.aclose()
        task, self._health_task = self._health_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await task

    # ------------------------------------------------------------------ stats

    def snapshot(self, *, timeline: bool = True) -> dict[str, Any]:
        """Plain data for ``kernel.stats()``: ``deployments`` and ``routing``."""
        now, wall = self.clock(), self.wall()
        fleet = self.fleet
        deployments: dict[str, Any] = {}
        for key in sorted(set(self.deployments) | set(self.breakers)):
            data = self.stats_for(key).snapshot(wall, timeline=timeline)
            if key != OTHER:  # no breaker is kept for what the config does not define
                with self.lock:
                    breaker = data["breaker"] = self.breaker_for(key).snapshot(now)
                found = fleet.describe(key, now) if fleet is not None else None
                if found is not None:
                    breaker["fleet"] = found
                check = self.health.get(key.partition("/")[0])
                if check is not None:  # its provider's (the fleet's newest) check
                    breaker["health_check"] = _health_row(check, now)
            deployments[key] = data
        section: dict[str, Any] = {"calls": self.calls.snapshot()}
        if timeline:
            section["timeline"] = self._timeline(wall)
        if self.health:
            section["health"] = {
                name: _health_row(h, now) for name, h in sorted(dict(self.health).items())
            }
        if fleet is not None:
            section["fleet"] = fleet.stats()
        return {"deployments": deployments, "routing": section}

    def _timeline(self, wall: float) -> list[dict[str, Any]]:
        merged: dict[int, Minute] = {}
        for stats in self.deployments.values():
            for slot in stats.timeline._slots.values():
                into = merged.setdefault(slot.minute, Minute(minute=slot.minute))
                into.requests += slot.requests
                into.successes += slot.successes
                into.errors += slot.errors
                into.input_tokens += slot.input_tokens
                into.output_tokens += slot.output_tokens
                into.cost += slot.cost
                into.latency_total += slot.latency_total
        oldest = (int(wall // 60) - self.settings.timeline_minutes + 1) * 60
        return [merged[m].as_dict() for m in sorted(merged) if m >= oldest]


def _health_row(check: HealthResult, now: float) -> dict[str, Any]:
    return {
        "ok": check.ok,
        "detail": check.detail,
        "age": round(max(0.0, now - check.at), 3),
        "latency_ms": round(check.latency * 1000, 2),
        "by": check.by or None,
    }


def _capabilities(kernel: Any, candidate: Any) -> Any:
    """The kernel's answer, remembered per candidate (a failing provider is logged
    there and gives ``None``: a provider that cannot say is not dropped for it)."""
    return kernel.models.capabilities(candidate)


_states: weakref.WeakKeyDictionary[Any, Routing] = weakref.WeakKeyDictionary()
_states_lock = threading.Lock()


# the kernel asked last and its state, both held weakly (a state kept alive here
# could keep its kernel alive through a health-check task)
_last: tuple[weakref.ref[Any], weakref.ref[Routing]] | None = None


def routing_for(kernel: Any, settings: RoutingSettings | None = None) -> Routing:
    """The routing state of ``kernel``, created on first use (with ``settings``, or
    the defaults). Strategies read live statistics from it."""
    global _last
    last = _last
    if settings is None and last is not None and last[0]() is kernel:
        known = last[1]()
        if known is not None:
            return known  # every hook of every call asks: no weak reference made
    state = _states.get(kernel)
    if state is None or settings is not None:
        with _states_lock:
            state = _states.get(kernel)
            if state is None:
                state = _states[kernel] = Routing(settings=settings or RoutingSettings())
            elif settings is not None and state.settings != settings:
                state.settings = settings  # the same object: strategies keep reading it
                for breaker in state.breakers.values():
                    breaker.settings = settings.breaker
    if state.names is None and hasattr(kernel, "config"):
        from llmkernel.models import live_names

        state.names = live_names(kernel)
    _last = (weakref.ref(kernel), weakref.ref(state))
    return state


def forget(kernel: Any) -> None:
    global _last
    _states.pop(kernel, None)
    _last = None


__all__ = ["OTHER", "Claim", "HealthResult", "Routing", "deployment_key", "forget", "routing_for"]
