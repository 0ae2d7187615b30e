"""One call's pipeline, step by step, in the order it runs: :class:`Call`.

A ``Call(kernel, ctx)`` owns one request from start to end, as pytest's
``runtestprotocol`` owns one test. Every call (chat, stream, embed) runs the steps:

1. **start**: ``on_request`` hooks (each may refuse by raising);
2. **cache** (chats and streams): a hit answers at once (a stream replays it);
3. **route**: ``filter_candidates`` drop candidates, with reasons; the configured
   strategy orders the rest into a fallback chain;
4. per candidate, per **attempt**: every gate's ``acquire`` (a refusal drops the
   candidate), then the provider call inside the attempt's time limit; then, however
   the attempt ended, every gate's ``release`` in reverse order and
   ``on_attempt_end``, exactly once (``on_error`` first on a failure);
5. **decide** after a failed attempt (``decide`` hooks; the built-in applies
   ``[routing.fallback]``): retry the candidate (stamina's backoff, or the wait the
   decision names), go to the next one, or raise;
6. **finish**: provider, model, cost, latency, attempts on the response; cache store;
   ``on_response``;
7. **end**: ``on_request_end``, exactly once, however the call ended.

A stream runs steps 1 to 5 only until its first visible event; its attempt ends when
the stream ends, is cut, or is abandoned. A stream that ends early is billed for what
it delivered: its usage is the provider's where it reported one, else counted from
the streamed text, marked ``estimated``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import attrs

from llmkernel._logging import log
from llmkernel.context import Attempt, Decision, Drop, Outcome, RequestContext
from llmkernel.errors import (
    AllCandidatesFailedError,
    AuthenticationError,
    NoCandidateLeftError,
    NoProviderError,
    PluginError,
    ProviderError,
    RefusedError,
)
from llmkernel.errors import TimeoutError as ProviderTimeoutError
from llmkernel.routing import Candidate
from llmkernel.types import (
    ChatRequest,
    EmbeddingResponse,
    FinishEvent,
    MetadataEvent,
    Response,
    StreamEvent,
    UsageEvent,
    replace,
)

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel
    from llmkernel.provider import Provider

__all__ = ["Call"]

# A provider whose own timeout ends a call within this many seconds of the deadline
# needs no second timer from the kernel.
_TIMER_SLACK = 1.0
# Events the kernel folds into the response and emits itself at the end.
KEPT = (UsageEvent, FinishEvent, MetadataEvent)


class _Leave(Exception):
    """Internal: leave this candidate for the next one."""

    def __init__(self, error: ProviderError | RefusedError, drops: tuple[Drop, ...] = ()) -> None:
        self.error = error
        self.drops = drops


class AttemptEnd:
    """Ends one attempt exactly once: gates released in reverse order, ``on_error``
    on a provider error, then ``on_attempt_end``."""

    __slots__ = ("attempt", "call", "done", "gates", "listened")

    def __init__(self, call: Call, attempt: Attempt) -> None:
        self.call = call
        self.attempt = attempt
        self.gates: list[Any] = []
        self.done = False
        #: whether anyone reads the outcome (a gate or an end hook); else skip building it
        self.listened = "on_attempt_end" in call.hooked

    def __call__(self, outcome: Outcome, error: BaseException | None = None) -> None:
        if self.done:
            return
        self.done = True
        call, attempt = self.call, self.attempt
        for gate in reversed(self.gates):
            try:
                gate.release(call.ctx, attempt, outcome)
            except Exception as exc:
                log.warning(
                    "llmkernel.gate.release_failed",
                    gate=type(gate).__name__,
                    error=f"{type(exc).__name__}: {exc}",
                )
        if isinstance(error, ProviderError):
            call.notify_error(attempt, error)
        if "on_attempt_end" in call.hooked:
            call.hook("on_attempt_end", "each", attempt=attempt, outcome=outcome)


class Call:
    """One request's steps. ``chat()``, ``embed()`` and ``stream(handle)`` run them."""

    __slots__ = ("ctx", "hooked", "kernel", "models", "setup")

    def __init__(self, kernel: Kernel, ctx: RequestContext) -> None:
        self.kernel = kernel
        self.ctx = ctx
        #: the config's plugins, providers, strategy, cache and gates the call keeps to
        #: its end, whatever ``kernel.reconfigure`` does meanwhile
        self.setup = setup = kernel._setup
        self.models = setup.models
        hooks = setup.hooks
        self.hooked = hooks.active(kernel) if hooks.idle else hooks.implemented

    def hook(self, name: str, mode: Any, **kwargs: Any) -> Any:
        return self.setup.hooks.call(name, mode, kernel=self.kernel, ctx=self.ctx, **kwargs)

    # ------------------------------------------------------------------ the calls

    async def chat(self) -> Response:
        """One non-streaming chat, start to end."""
        ctx, setup = self.ctx, self.setup
        candidate: Candidate | None = None
        setup.active += 1
        try:
            self.kernel._bind_loop()
            self.start()
            response = await self.lookup() if setup.cache is not None else None
            if response is None:
                candidate, answer, end_attempt = await self.attempts("chat")
                response = self.finish(candidate, answer)
                if end_attempt.listened:
                    end_attempt(self.ok(response, end_attempt.attempt.started, candidate))
                if setup.cache is not None:
                    await self.store(response)
            self.responded(response)
        except BaseException as exc:
            setup.active -= 1
            waits = self.end(self.failed(exc))
            if waits:
                await settle(waits, exc)
            raise
        setup.active -= 1
        if "on_request_end" in self.hooked:
            waits = self.end(self.ok(response, ctx.started, candidate))
            if waits:
                await settle(waits)
        return response

    async def embed(self) -> EmbeddingResponse:
        """One embedding call, start to end."""
        self.setup.active += 1
        try:
            self.kernel._bind_loop()
            self.start()
            candidate, answer, end_attempt = await self.attempts("embed")
            response: EmbeddingResponse = replace(
                answer,
                provider=candidate.provider,
                model=answer.model or candidate.model,
                cost=self.models.cost(candidate, answer.usage),
                latency=time.monotonic() - self.ctx.started,
                attempts=self.sent(),
            )
            end_attempt(self.ok(response, end_attempt.attempt.started, candidate))
        except BaseException as exc:
            self.setup.active -= 1
            waits = self.end(self.failed(exc))
            if waits:
                await settle(waits, exc)
            raise
        self.setup.active -= 1
        waits = self.end(self.ok(response, self.ctx.started, candidate))
        if waits:
            await settle(waits)
        return response

    # ------------------------------------------------------------------ 1. start

    def start(self) -> None:
        """``on_request`` hooks, each may refuse the call by raising."""
        if "on_request" in self.hooked:
            self.hook("on_request", "strict", request=self.ctx.request)

    # ------------------------------------------------------------------ 2. cache

    async def lookup(self) -> Response | None:
        cache, ctx = self.setup.cache, self.ctx
        assert cache is not None and isinstance(ctx.request, ChatRequest)
        try:
            hit = await cache.lookup(ctx.request)
        except Exception as exc:
            log.warning("llmkernel.cache.lookup_failed", error=f"{type(exc).__name__}: {exc}")
            return None
        if hit is None:
            return None
        return replace(hit, cached=hit.cached or True, attempts=0, latency=self.elapsed())

    async def store(self, response: Response) -> None:
        """Tell the cache; a failing cache is logged, never costs the user the answer."""
        cache, request = self.setup.cache, self.ctx.request
        assert cache is not None and isinstance(request, ChatRequest)
        try:
            await cache.store(request, response)
        except Exception as exc:
            log.warning("llmkernel.cache.store_failed", error=f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ 3. route

    def route(self) -> list[Candidate]:
        """The candidates to try, in order: resolved, filtered, then the strategy's
        order; candidates marked unhealthy go to the back."""
        setup, ctx = self.setup, self.ctx
        experiment = (
            setup.config.experiments.get(ctx.request.model) if setup.config.experiments else None
        )
        if experiment is None:
            candidates = self.models.resolve(ctx.request.model)
        else:  # an A/B test: this caller's variant
            ctx.variant, target = experiment.choose(ctx.request.metadata, ctx.id)
            candidates = self.models.resolve(target)
        if "filter_candidates" in self.hooked:
            candidates = self.filtered(candidates)
        if not candidates:
            raise self.nothing_left()
        if setup.strategy_is_default and "select_provider" not in self.hooked:
            ordered = list(candidates)
        else:
            ordered = checked(
                setup.strategy.select(ctx, list(candidates)),
                candidates,
                f"strategy {setup.config.routing.strategy!r}",
            )
            if not ordered:
                raise self.nothing_left()
        ordered = self.models.healthy_first(ordered)
        ctx.candidates = ordered
        return ordered

    def filtered(self, candidates: list[Candidate]) -> list[Candidate]:
        left, ctx = list(candidates), self.ctx
        for impl in self.setup.hooks.impls("filter_candidates"):
            if not left:
                break
            from llmkernel.plugins import call_impl

            args = {"kernel": self.kernel, "ctx": ctx, "candidates": list(left)}
            for given in call_impl(impl, "filter_candidates", args) or ():
                if not isinstance(given, Drop):
                    raise PluginError(
                        f"plugin {impl.plugin_name!r} returned {type(given).__name__} from "
                        "filter_candidates; it must return llmkernel.context.Drop items"
                    )
                if given.candidate in left:
                    left.remove(given.candidate)
                    drop = given if given.by else attrs.evolve(given, by=impl.plugin_name)
                    ctx.dropped.append(drop)
                    log.debug(
                        "llmkernel.candidate.dropped",
                        candidate=drop.candidate.qualified,
                        reason=drop.reason,
                        by=drop.by,
                    )
        return left

    def nothing_left(self) -> NoProviderError:
        ctx = self.ctx
        if not ctx.dropped:
            return NoProviderError(f"no candidate left for model {ctx.request.model!r}")
        reasons = "; ".join(f"{d.candidate.qualified}: {d.reason}" for d in ctx.dropped)
        return NoCandidateLeftError(
            f"no candidate can serve {ctx.request.model!r}: {reasons}", ctx.dropped
        )

    # ------------------------------------------------------------------ 4-5. attempts

    async def attempts(self, kind: str) -> tuple[Candidate, Any, AttemptEnd]:
        """Each candidate in turn, each with its attempts, inside the deadline: the
        candidate that answered, its answer, and the attempt's end, which the caller
        calls exactly once when the answer is final. The first attempt on a candidate
        runs bare (a success pays for no retry machinery)."""
        ctx = self.ctx
        queue = self.route()
        failures: list[ProviderError | RefusedError] = []
        while queue:
            candidate = queue.pop(0)
            if ctx.remaining() <= 0:
                failures.append(
                    ProviderTimeoutError(
                        "the call's total deadline ran out before this candidate",
                        provider=candidate.provider,
                        model=candidate.model,
                    )
                )
                continue
            routed = self.models.routed(ctx.request, candidate.model)
            attempt = self.new_attempt(candidate, routed, kind)
            try:
                try:
                    answer, end = await self.attempt(attempt, kind, queue)
                except ProviderError as exc:
                    answer, end = await self.retried(attempt, kind, queue, exc)
                return candidate, answer, end
            except RefusedError as exc:
                failures.append(self.refused(candidate, exc))
            except _Leave as leave:
                failures.append(leave.error)
                if isinstance(leave.error, AuthenticationError):
                    self.models.mark_unhealthy(candidate.provider)
                for drop in leave.drops:
                    if drop.candidate in queue:
                        queue.remove(drop.candidate)
                        ctx.dropped.append(drop)
            if queue:
                log.info(
                    "llmkernel.fallback",
                    provider=candidate.provider,
                    model=candidate.model,
                    error=type(failures[-1]).__name__,
                )
        if not failures:
            raise self.nothing_left()
        if all(isinstance(f, RefusedError) for f in failures):
            raise failures[-1]
        if len(failures) == 1:
            raise failures[0]
        raise AllCandidatesFailedError(ctx.request.model, failures)

    def new_attempt(self, candidate: Candidate, routed: Any, kind: str) -> Attempt:
        ctx = self.ctx
        number = 1 + sum(1 for a in ctx.attempts if a.candidate is candidate)
        attempt = Attempt(
            candidate=candidate,
            number=number,
            index=len(ctx.attempts) + 1,
            request=routed,
            stream=kind == "stream",
        )
        ctx.attempts.append(attempt)
        return attempt

    async def attempt(
        self, attempt: Attempt, kind: str, queue: list[Candidate]
    ) -> tuple[Any, AttemptEnd]:
        """One attempt: gates, then the provider call inside its time limit. On any
        failure the attempt is ended here; on success the caller ends it."""
        candidate = attempt.candidate
        end = AttemptEnd(self, attempt)
        try:
            for gate in self.setup.gates:
                await gate.acquire(self.ctx, attempt)
                end.gates.append(gate)
                end.listened = True
            log.debug(
                "llmkernel.request.sent",
                provider=candidate.provider,
                model=candidate.model,
                attempt=attempt.number,
            )
            provider = self.models.provider(candidate.provider)
            limit, timer = self.limit(provider, queue)
            if kind == "chat":
                work: Any = provider.chat(attempt.request)  # type: ignore[arg-type]
            elif kind == "embed":
                work = provider.embed(attempt.request)  # type: ignore[arg-type]
            else:
                work = _open_stream(provider, attempt.request)  # type: ignore[arg-type]
            if timer is None:
                return await work, end
            try:
                async with timer:
                    return await work, end
            except TimeoutError:
                if not timer.expired():
                    raise  # not ours: the provider's own
                raise self.timed_out(limit) from None
        except BaseException as exc:
            if isinstance(exc, ProviderError):
                fill(exc, candidate)
            end(self.failed(exc, attempt=attempt), exc)
            raise

    def limit(self, provider: Provider, queue: list[Candidate]) -> tuple[float, Any]:
        """The attempt's time limit: the call's deadline, ``[retry] attempt_timeout``,
        and, while other candidates wait, an equal share of the time left, so a hung
        first candidate cannot eat the whole deadline. No timer when the provider's
        own timeout bounds the call within it (one timer, not two)."""
        left = self.ctx.remaining()
        limit = left
        attempt_timeout = self.setup.config.retry.attempt_timeout
        if attempt_timeout is not None:
            limit = min(limit, attempt_timeout)
        if queue:
            limit = min(limit, left / (len(queue) + 1))
        own = provider.call_timeout
        if own is not None and own <= limit + (_TIMER_SLACK if limit == left else 0.0):
            return limit, None
        import asyncio  # here: `import llmkernel` goes without it

        return (limit if limit < left else -1.0), asyncio.timeout(max(0.0, limit))

    def timed_out(self, limit: float) -> ProviderTimeoutError:
        if limit < 0:  # the limit was the call's deadline
            return ProviderTimeoutError("the call's total deadline ran out", retryable=False)
        return ProviderTimeoutError(f"no answer within the attempt's {limit:.3g} s")

    async def retried(
        self, first: Attempt, kind: str, queue: list[Candidate], error: ProviderError
    ) -> tuple[Any, AttemptEnd]:
        """After a failed first attempt: the ``decide`` hooks choose; retries run
        with stamina (:func:`llmkernel.retry.retried`)."""
        from llmkernel.retry import retried

        return await retried(self, first, kind, queue, error)

    def decide(self, attempt: Attempt, error: ProviderError, queue: list[Candidate]) -> Decision:
        decision, plugin = self.hook(
            "decide", "first", attempt=attempt, error=error, remaining=list(queue)
        )
        if not isinstance(decision, Decision):
            raise PluginError(
                f"plugin {plugin!r} returned {type(decision).__name__} from decide; it must "
                "return a llmkernel.context.Decision"
            )
        return decision

    def refused(self, candidate: Candidate, exc: RefusedError) -> RefusedError:
        exc.provider = exc.provider or candidate.provider
        exc.model = exc.model or candidate.model
        self.ctx.dropped.append(
            Drop(candidate=candidate, reason=exc.message, by=exc.kind, error=exc)
        )
        log.debug("llmkernel.attempt.refused", candidate=candidate.qualified, reason=exc.message)
        return exc

    def notify_error(self, attempt: Attempt, error: Exception) -> None:
        candidate = attempt.candidate
        log.debug(
            "llmkernel.attempt.failed",
            provider=candidate.provider,
            model=candidate.model,
            attempt=attempt.number,
            error=type(error).__name__,
            retryable=getattr(error, "retryable", False),
        )
        if "on_error" in self.hooked:
            self.hook(
                "on_error",
                "each",
                request=attempt.request,
                candidate=candidate,
                error=error,
                attempt=attempt.number,
            )

    # ------------------------------------------------------------------ 6. finish

    def finish(self, candidate: Candidate, response: Response) -> Response:
        parsed = response.parsed
        request = self.ctx.request
        assert isinstance(request, ChatRequest)
        if (
            parsed is None
            and request.response_format is not None
            and request.response_format.type != "text"
            and response.text
        ):
            import json

            try:
                parsed = json.loads(response.text)
            except ValueError:
                parsed = None
        return replace(
            response,
            provider=candidate.provider,
            model=response.model or candidate.model,
            parsed=parsed,
            cost=self.models.cost(candidate, response.usage),
            latency=self.elapsed(),
            attempts=self.sent(),
        )

    def responded(self, response: Response) -> None:
        if "on_response" in self.hooked:
            self.hook("on_response", "each", request=self.ctx.request, response=response)

    def elapsed(self) -> float:
        return time.monotonic() - self.ctx.started

    def sent(self) -> int:
        """Attempts that reached a provider (gates' refusals are not sent)."""
        ctx = self.ctx
        if not ctx.dropped:
            return len(ctx.attempts)
        return len(ctx.attempts) - sum(1 for d in ctx.dropped if isinstance(d.error, RefusedError))

    # ------------------------------------------------------------------ 7. end

    def end(self, outcome: Outcome) -> list[Any]:
        """``on_request_end``; returns the awaitables its implementations handed
        back (the ledger's: the call's row is durable), for :func:`settle`."""
        if "on_request_end" in self.hooked:
            waits: list[Any] = self.setup.hooks.call(
                "on_request_end", "each", kernel=self.kernel, ctx=self.ctx, outcome=outcome
            )
            return waits
        return []

    def ok(
        self,
        response: Response | EmbeddingResponse,
        since: float,
        candidate: Candidate | None,
        first_event_latency: float | None = None,
    ) -> Outcome:
        return Outcome(
            status="ok",
            response=response,
            usage=response.usage,
            cost=response.cost,
            latency=time.monotonic() - since,
            first_event_latency=first_event_latency,
            headers=response.headers,
            candidate=candidate,
            cached=getattr(response, "cached", False),
            attempts=response.attempts,
        )

    def failed(
        self, exc: BaseException, response: Any = None, attempt: Attempt | None = None
    ) -> Outcome:
        """How the call (or one ``attempt`` of it) ended on ``exc``."""
        last = attempt or (self.ctx.attempts[-1] if self.ctx.attempts else None)
        return Outcome(
            status=status_of(exc),
            error=None if isinstance(exc, GeneratorExit) else exc,
            response=response,
            usage=getattr(response, "usage", None),
            cost=getattr(response, "cost", None),
            headers=getattr(exc, "headers", None) or {},
            latency=time.monotonic() - (attempt or self.ctx).started,
            candidate=last.candidate if last else None,
            attempts=1 if attempt else self.sent(),
        )


# ---------------------------------------------------------------------- helpers


async def _open_stream(
    provider: Provider, routed: ChatRequest
) -> tuple[AsyncIterator[StreamEvent], list[StreamEvent]]:
    """Open a stream and read up to its first event a user would see; events the
    kernel keeps to itself (metadata, usage) are held with it."""
    events = aiter(provider.stream(routed))
    held: list[StreamEvent] = []
    try:
        async for event in events:
            held.append(event)
            if not isinstance(event, KEPT):
                break
    except BaseException:
        await aclose_events(events)
        raise
    return events, held


async def settle(waits: list[Any], exc: BaseException | None = None) -> None:
    """Await what the end hooks handed back before the caller gets the answer. After
    a failure (``exc``) the caller gets that failure whatever happens here; when the
    caller is gone (cancelled, or a stream it stopped reading) nothing is awaited."""
    if exc is None:
        for awaitable in waits:
            await awaitable
        return
    if status_of(exc) in ("cancelled", "abandoned"):
        return
    for awaitable in waits:
        with contextlib.suppress(Exception):  # the call's own error is what is raised
            await awaitable


def checked(chosen: Any, given: list[Candidate], who: str) -> list[Candidate]:
    """A strategy's answer, checked: a list of the candidates it was given."""
    if chosen is None:
        return list(given)
    if not isinstance(chosen, list | tuple) or not all(isinstance(c, Candidate) for c in chosen):
        raise PluginError(
            f"{who} returned {type(chosen).__name__}: it must return a list of the "
            "Candidate objects it was given"
        )
    strangers = [c.qualified for c in chosen if c not in given]
    if strangers:
        raise PluginError(f"{who} returned candidates it was not given: {', '.join(strangers)}")
    return list(chosen)


def leave_or_raise(error: ProviderError, decision: Decision) -> Exception:
    if decision.action == "raise":
        return error
    return _Leave(error, decision.drop)


def status_of(exc: BaseException) -> Any:
    if isinstance(exc, RefusedError):
        return "refused"
    if isinstance(exc, GeneratorExit):
        return "abandoned"
    from asyncio import CancelledError

    if isinstance(exc, CancelledError | KeyboardInterrupt | SystemExit):
        return "cancelled"
    return "error"


def fill(exc: ProviderError, candidate: Candidate) -> None:
    """Errors always name the provider instance and model they came from."""
    exc.provider = exc.provider or candidate.provider
    exc.model = exc.model or candidate.model


async def aclose_events(events: AsyncIterator[Any]) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):  # closing must not hide the real error
            await close()
