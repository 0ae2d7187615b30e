"""The request pipeline, step by step, in the order a call runs.

Every call (chat, stream, embed) runs the same steps:

1. **start**: a :class:`~llmkernel.context.RequestContext` with the deadline;
   ``on_request`` hooks (each may refuse by raising);
2. **cache** (chats and streams): a hit answers at once (a stream replays it);
3. **filter**: ``filter_candidates`` hooks drop candidates, with reasons;
4. **select**: the configured strategy orders the rest into a fallback chain;
5. per candidate, per **attempt**: every gate's ``acquire`` (a refusal drops the
   candidate and moves on), then the provider call inside the attempt's time
   limit; then, however the attempt ended, every gate's ``release`` in reverse
   order and ``on_attempt_end``, exactly once (``on_error`` first on a failure);
6. **decide** after a failed attempt (``decide`` hook; the built-in applies
   ``[routing.fallback]``): retry the candidate (stamina waits), go to the next
   one, or raise;
7. **finish**: provider, model, cost, latency, attempts on the response; cache
   store; ``on_response``;
8. **end**: ``on_request_end``, exactly once, however the call ended.

A stream runs steps 1 to 6 only until its first visible event; its attempt ends
(gates released, ``on_attempt_end``) when the stream ends, is cut, or is abandoned.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

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
from llmkernel.plugins import call_each, call_impl
from llmkernel.routing import Candidate
from llmkernel.streaming import ResponseBuilder
from llmkernel.types import (
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    ErrorEvent,
    FinishEvent,
    MetadataEvent,
    ReasoningDelta,
    ReasoningPart,
    Response,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    UsageEvent,
    replace,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from llmkernel.kernel import AsyncChatStream, Kernel
    from llmkernel.provider import Provider

T = TypeVar("T")

# A provider whose own timeout ends a call within this many seconds of the deadline
# needs no second timer from the kernel.
_TIMER_SLACK = 1.0

# Events the kernel folds into the response and emits itself at the end.
_KEPT = (UsageEvent, FinishEvent, MetadataEvent)


# ---------------------------------------------------------------------- 1. start


def start(kernel: Kernel, ctx: RequestContext) -> None:
    """``on_request`` hooks, each may refuse the call by raising."""
    if "on_request" in kernel.hooked:
        from llmkernel.plugins import call_each_strict

        call_each_strict(
            kernel.plugin_manager, "on_request", kernel=kernel, ctx=ctx, request=ctx.request
        )


# ---------------------------------------------------------------------- 2. cache


async def lookup(kernel: Kernel, ctx: RequestContext) -> Response | None:
    cache = kernel.cache
    if cache is None:
        return None
    request = ctx.request
    assert isinstance(request, ChatRequest)
    try:
        hit = await cache.lookup(request)
    except Exception as exc:
        log.warning("llmkernel.cache.lookup_failed", error=f"{type(exc).__name__}: {exc}")
        return None
    if hit is None:
        return None
    return replace(hit, cached=True, attempts=0, latency=time.monotonic() - ctx.started)


async def store(kernel: Kernel, request: ChatRequest, response: Response) -> None:
    """Tell the cache; a failing cache is logged, never costs the user the answer."""
    if kernel.cache is None:
        return
    try:
        await kernel.cache.store(request, response)
    except Exception as exc:
        log.warning("llmkernel.cache.store_failed", error=f"{type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------- 3-4. filter, select


def route(kernel: Kernel, ctx: RequestContext) -> list[Candidate]:
    """The candidates to try, in order: resolved, filtered, then the strategy's
    order; candidates marked unhealthy go to the back."""
    candidates = kernel.candidates_for(ctx.request.model)
    if "filter_candidates" in kernel.hooked:
        candidates = _filter(kernel, ctx, candidates)
    if not candidates:
        raise _nothing_left(ctx)
    if kernel.strategy_is_default and "select_provider" not in kernel.hooked:
        ordered = list(candidates)
    else:
        ordered = kernel.checked_candidates(
            kernel.strategy.select(ctx, list(candidates)),
            candidates,
            f"strategy {kernel.config.routing.strategy!r}",
        )
        if not ordered:
            raise _nothing_left(ctx)
    ordered = kernel.healthy_first(ordered)
    ctx.candidates = ordered
    return ordered


def _filter(kernel: Kernel, ctx: RequestContext, candidates: list[Candidate]) -> list[Candidate]:
    left = list(candidates)
    for impl in reversed(kernel.hook.filter_candidates.get_hookimpls()):
        if not left:
            break
        args = {"kernel": kernel, "ctx": ctx, "candidates": list(left)}
        drops: Any = call_impl(impl, "filter_candidates", args)
        for drop in drops or ():
            if not isinstance(drop, Drop):
                raise PluginError(
                    f"plugin {impl.plugin_name!r} returned {type(drop).__name__} from "
                    "filter_candidates; it must return llmkernel.context.Drop items"
                )
            if drop.candidate in left:
                left.remove(drop.candidate)
                recorded = (
                    drop
                    if drop.by
                    else Drop(candidate=drop.candidate, reason=drop.reason, by=impl.plugin_name)
                )
                ctx.dropped.append(recorded)
                log.debug(
                    "llmkernel.candidate.dropped",
                    candidate=drop.candidate.qualified,
                    reason=drop.reason,
                    by=recorded.by,
                )
    return left


def _nothing_left(ctx: RequestContext) -> NoProviderError:
    if not ctx.dropped:
        return NoProviderError(f"no candidate left for model {ctx.request.model!r}")
    reasons = "; ".join(f"{d.candidate.qualified}: {d.reason}" for d in ctx.dropped)
    return NoCandidateLeftError(
        f"no candidate can serve {ctx.request.model!r}: {reasons}", ctx.dropped
    )


# ---------------------------------------------------------------------- 5-6. attempts


class AttemptEnd:
    """Ends one attempt exactly once: gates released in reverse order, then
    ``on_attempt_end``."""

    __slots__ = ("attempt", "ctx", "done", "gates", "kernel", "listened")

    def __init__(
        self, kernel: Kernel, ctx: RequestContext, attempt: Attempt, gates: list[Any]
    ) -> None:
        self.kernel = kernel
        self.ctx = ctx
        self.attempt = attempt
        self.gates = gates
        self.done = False
        #: whether anyone reads the outcome (a gate or an end hook); else skip building it
        self.listened = bool(gates) or "on_attempt_end" in kernel.hooked

    def __call__(self, outcome: Outcome, error: BaseException | None = None) -> None:
        if self.done:
            return
        self.done = True
        kernel, ctx, attempt = self.kernel, self.ctx, self.attempt
        for gate in reversed(self.gates):
            try:
                gate.release(ctx, attempt, outcome)
            except Exception as exc:
                log.warning(
                    "llmkernel.gate.release_failed",
                    gate=type(gate).__name__,
                    error=f"{type(exc).__name__}: {exc}",
                )
        if isinstance(error, ProviderError):
            notify_error(kernel, ctx, attempt, error)
        if "on_attempt_end" in kernel.hooked:
            call_each(
                kernel.plugin_manager,
                "on_attempt_end",
                kernel=kernel,
                ctx=ctx,
                attempt=attempt,
                outcome=outcome,
            )


def notify_error(kernel: Kernel, ctx: RequestContext, attempt: Attempt, error: Exception) -> None:
    candidate = attempt.candidate
    log.debug(
        "llmkernel.attempt.failed",
        provider=candidate.provider,
        model=candidate.model,
        attempt=attempt.number,
        error=type(error).__name__,
        retryable=getattr(error, "retryable", False),
    )
    if "on_error" in kernel.hooked:
        call_each(
            kernel.plugin_manager,
            "on_error",
            kernel=kernel,
            ctx=ctx,
            request=attempt.request,
            candidate=candidate,
            error=error,
            attempt=attempt.number,
        )


class _Leave(Exception):
    """Internal: leave this candidate for the next one."""

    def __init__(self, error: ProviderError | RefusedError, drops: tuple[Drop, ...] = ()) -> None:
        self.error = error
        self.drops = drops


Call = Callable[["Provider", Any], Awaitable[T]]


async def run_candidates(
    kernel: Kernel, ctx: RequestContext, call: Call[T], *, stream: bool = False
) -> tuple[Candidate, T, AttemptEnd]:
    """Try each candidate in turn, each with its attempts, inside the deadline.
    Returns the candidate that answered, its answer, and the attempt's end, which
    the caller must call exactly once when the answer is final."""
    queue = route(kernel, ctx)
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
        try:
            answer, end = await _try_candidate(kernel, ctx, candidate, queue, call, stream)
            return candidate, answer, end
        except _Leave as leave:
            failures.append(leave.error)
            if isinstance(leave.error, AuthenticationError):
                kernel.mark_unhealthy(candidate.provider)
            for drop in leave.drops:
                if drop.candidate in queue:
                    queue.remove(drop.candidate)
                    ctx.dropped.append(drop)
            if queue:
                log.info(
                    "llmkernel.fallback",
                    provider=candidate.provider,
                    model=candidate.model,
                    error=type(leave.error).__name__,
                )
    if not failures:
        raise _nothing_left(ctx)
    if all(isinstance(f, RefusedError) for f in failures):
        raise failures[-1]
    if len(failures) == 1:
        raise failures[0]
    raise AllCandidatesFailedError(ctx.request.model, failures)


async def _try_candidate(
    kernel: Kernel,
    ctx: RequestContext,
    candidate: Candidate,
    queue: list[Candidate],
    call: Call[T],
    stream: bool,
) -> tuple[T, AttemptEnd]:
    """Attempts on one candidate: the first runs bare (a success never pays for
    retry machinery); retries run in ``stamina.retry_context``, each wait decided
    by the ``decide`` hooks."""
    routed = kernel.routed(ctx.request, candidate.model)
    last: list[Attempt] = []

    def next_attempt() -> Attempt:
        current = Attempt(
            candidate=candidate,
            number=len(last) + 1,
            index=len(ctx.attempts) + 1,
            request=routed,
            stream=stream,
        )
        last.append(current)
        ctx.attempts.append(current)
        return current

    async def attempt() -> tuple[T, AttemptEnd]:
        return await run_attempt(kernel, ctx, next_attempt(), call, queue)

    try:
        # the first attempt awaited directly: no coroutine of its own on the hot path
        return await run_attempt(kernel, ctx, next_attempt(), call, queue)
    except RefusedError as exc:
        raise _refused(ctx, candidate, exc) from None
    except ProviderError as exc:
        first, decision = exc, decide(kernel, ctx, last[-1], exc, queue)
    if decision.action != "retry" or not _fits(ctx, decision, last[-1], kernel):
        raise _leave_or_raise(first, decision)

    pending: list[Any] = [first]
    final: list[Decision] = [decision]

    def wait_for(exc: Exception) -> bool | float:
        """stamina's ``on``: False to stop, else the seconds to wait."""
        if pending:
            pending.clear()
            chosen = final[0]
        elif isinstance(exc, ProviderError):
            chosen = decide(kernel, ctx, last[-1], exc, queue)
        else:
            return False
        final[0] = chosen
        if chosen.action != "retry":
            return False
        wait = _wait(chosen, last[-1], kernel)
        if wait >= ctx.remaining():
            final[0] = Decision(action="next", reason="no time left to retry")
            return False
        log.info(
            "llmkernel.retry.scheduled",
            provider=candidate.provider,
            model=candidate.model,
            attempt=last[-1].number + 1,
            wait=round(wait, 3),
            error=type(exc).__name__,
        )
        return wait

    try:
        async for trial in _stamina().retry_context(on=wait_for, attempts=None, timeout=None):
            with trial:
                if pending:
                    raise first
                return await attempt()
    except RefusedError as exc:
        raise _refused(ctx, candidate, exc) from None
    except ProviderError as exc:
        raise _leave_or_raise(exc, final[0]) from None
    raise AssertionError("unreachable: stamina re-raises the last failure")


def _refused(ctx: RequestContext, candidate: Candidate, exc: RefusedError) -> _Leave:
    exc.provider = exc.provider or candidate.provider
    exc.model = exc.model or candidate.model
    ctx.dropped.append(Drop(candidate=candidate, reason=exc.message, by=exc.kind, error=exc))
    log.debug("llmkernel.attempt.refused", candidate=candidate.qualified, reason=exc.message)
    return _Leave(exc)


def _leave_or_raise(error: ProviderError, decision: Decision) -> Exception:
    if decision.action == "raise":
        return error
    return _Leave(error, decision.drop)


def _fits(ctx: RequestContext, decision: Decision, attempt: Attempt, kernel: Kernel) -> bool:
    return _wait(decision, attempt, kernel) < ctx.remaining()


def _wait(decision: Decision, attempt: Attempt, kernel: Kernel) -> float:
    if decision.wait is not None:
        return max(0.0, decision.wait)
    retry = kernel.config.retry
    base = min(retry.max_wait, retry.initial_wait * 2.0 ** (attempt.number - 1))
    return base + random.uniform(0, retry.jitter)


def decide(
    kernel: Kernel,
    ctx: RequestContext,
    attempt: Attempt,
    error: ProviderError,
    remaining: list[Candidate],
) -> Decision:
    from llmkernel.plugins import first_result

    decision, plugin = first_result(
        kernel.plugin_manager,
        "decide",
        kernel=kernel,
        ctx=ctx,
        attempt=attempt,
        error=error,
        remaining=list(remaining),
    )
    if not isinstance(decision, Decision):
        raise PluginError(
            f"plugin {plugin!r} returned {type(decision).__name__} from decide; it must "
            "return a llmkernel.context.Decision"
        )
    return decision


async def run_attempt(
    kernel: Kernel,
    ctx: RequestContext,
    attempt: Attempt,
    call: Call[T],
    queue: list[Candidate],
) -> tuple[T, AttemptEnd]:
    """One attempt: gates, then the provider call inside its time limit. On any
    failure the attempt is ended here; on success the caller ends it."""
    candidate = attempt.candidate
    end = AttemptEnd(kernel, ctx, attempt, [])
    try:
        for gate in kernel.gates:
            await gate.acquire(ctx, attempt)
            end.gates.append(gate)
            end.listened = True
        log.debug(
            "llmkernel.request.sent",
            provider=candidate.provider,
            model=candidate.model,
            attempt=attempt.number,
        )
        provider = kernel.provider(candidate.provider)
        answer = await _bounded(kernel, ctx, provider, call(provider, attempt.request), queue)
    except BaseException as exc:
        if isinstance(exc, ProviderError):
            fill(exc, candidate)
        end(attempt_outcome(attempt, exc), exc)
        raise
    return answer, end


async def _bounded(
    kernel: Kernel,
    ctx: RequestContext,
    provider: Provider,
    awaitable: Awaitable[T],
    queue: list[Candidate],
) -> T:
    """Await a provider call within the attempt's limit: the call's deadline, the
    ``[retry] attempt_timeout``, and, while other candidates wait, an equal share of
    the time left, so a hung first candidate cannot eat the whole deadline."""
    left = ctx.remaining()
    limit = left
    attempt_timeout = kernel.config.retry.attempt_timeout
    if attempt_timeout is not None:
        limit = min(limit, attempt_timeout)
    if queue:
        limit = min(limit, left / (len(queue) + 1))
    own = provider.call_timeout
    if own is not None and own <= limit + (_TIMER_SLACK if limit == left else 0.0):
        return await awaitable  # the provider's own timeout bounds it: one timer, not two
    import asyncio  # here: `import llmkernel` goes without it

    timer = asyncio.timeout(max(0.0, limit))
    try:
        async with timer:
            return await awaitable
    except TimeoutError:
        if not timer.expired():
            raise  # not ours: the provider's own
        if limit >= left:
            raise ProviderTimeoutError(
                "the call's total deadline ran out", retryable=False
            ) from None
        raise ProviderTimeoutError(f"no answer within the attempt's {limit:.3g} s") from None


def attempt_outcome(attempt: Attempt, exc: BaseException) -> Outcome:
    return Outcome(
        status=status_of(exc),
        error=exc,
        headers=getattr(exc, "headers", None) or {},
        latency=time.monotonic() - attempt.started,
        candidate=attempt.candidate,
        attempts=1,
    )


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


# ---------------------------------------------------------------------- 7. finish


def finish(
    kernel: Kernel, ctx: RequestContext, candidate: Candidate, response: Response
) -> Response:
    parsed = response.parsed
    request = ctx.request
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
        cost=kernel.cost(candidate, response.usage),
        latency=time.monotonic() - ctx.started,
        attempts=len(ctx.attempts) - _refusals(ctx),
    )


def _refusals(ctx: RequestContext) -> int:
    if not ctx.dropped:
        return 0
    return sum(1 for d in ctx.dropped if isinstance(d.error, RefusedError))


def ok_outcome(
    ctx: RequestContext,
    response: Response | EmbeddingResponse,
    *,
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


def responded(kernel: Kernel, ctx: RequestContext, response: Response) -> None:
    if "on_response" in kernel.hooked:
        call_each(
            kernel.plugin_manager,
            "on_response",
            kernel=kernel,
            ctx=ctx,
            request=ctx.request,
            response=response,
        )


# ---------------------------------------------------------------------- 8. end


def end(kernel: Kernel, ctx: RequestContext, outcome: Outcome) -> list[Any]:
    """``on_request_end``; returns the awaitables its implementations handed back
    (the ledger's: the call's row is durable), for :func:`settle`."""
    if "on_request_end" in kernel.hooked:
        return call_each(
            kernel.plugin_manager, "on_request_end", kernel=kernel, ctx=ctx, outcome=outcome
        )
    return []


async def settle(waits: list[Any], exc: BaseException | None = None) -> None:
    """Await what the end hooks handed back before the caller gets the answer.
    After a failure (``exc``) the caller gets that failure whatever happens here;
    when the caller is gone (cancelled, or a stream it stopped reading) nothing is
    awaited."""
    if exc is None:
        for awaitable in waits:
            await awaitable
        return
    if status_of(exc) in ("cancelled", "abandoned"):
        return
    for awaitable in waits:
        with contextlib.suppress(Exception):  # the call's own error is what is raised
            await awaitable


def failed(ctx: RequestContext, exc: BaseException, response: Any = None) -> Outcome:
    candidate = ctx.attempts[-1].candidate if ctx.attempts else None
    return Outcome(
        status=status_of(exc),
        error=exc,
        response=response,
        usage=getattr(response, "usage", None),
        headers=getattr(exc, "headers", None) or {},
        latency=time.monotonic() - ctx.started,
        candidate=candidate,
        attempts=len(ctx.attempts) - _refusals(ctx),
    )


# ---------------------------------------------------------------------- the calls


async def run_chat(kernel: Kernel, ctx: RequestContext) -> Response:
    """One non-streaming chat, start to end."""
    try:
        start(kernel, ctx)
        response = await lookup(kernel, ctx) if kernel.cache is not None else None
        if response is not None:
            responded(kernel, ctx, response)
            candidate = None
        else:

            async def call(provider: Provider, routed: ChatRequest) -> Response:
                return await provider.chat(routed)

            candidate, answer, end_attempt = await run_candidates(kernel, ctx, call)
            response = finish(kernel, ctx, candidate, answer)
            if end_attempt.listened:
                end_attempt(
                    ok_outcome(
                        ctx, response, since=end_attempt.attempt.started, candidate=candidate
                    )
                )
            request = ctx.request
            assert isinstance(request, ChatRequest)
            if kernel.cache is not None:
                await store(kernel, request, response)
            responded(kernel, ctx, response)
    except BaseException as exc:
        waits = end(kernel, ctx, failed(ctx, exc))
        if waits:
            await settle(waits, exc)
        raise
    if "on_request_end" in kernel.hooked:
        waits = end(kernel, ctx, ok_outcome(ctx, response, since=ctx.started, candidate=candidate))
        if waits:
            await settle(waits)
    return response


async def run_embed(kernel: Kernel, ctx: RequestContext) -> EmbeddingResponse:
    """One embedding call, start to end."""
    try:
        start(kernel, ctx)

        async def call(provider: Provider, routed: EmbeddingRequest) -> EmbeddingResponse:
            return await provider.embed(routed)

        candidate, answer, end_attempt = await run_candidates(kernel, ctx, call)
        response = replace(
            answer,
            provider=candidate.provider,
            model=answer.model or candidate.model,
            cost=kernel.cost(candidate, answer.usage),
            latency=time.monotonic() - ctx.started,
            attempts=len(ctx.attempts) - _refusals(ctx),
        )
        end_attempt(
            ok_outcome(ctx, response, since=end_attempt.attempt.started, candidate=candidate)
        )
    except BaseException as exc:
        waits = end(kernel, ctx, failed(ctx, exc))
        if waits:
            await settle(waits, exc)
        raise
    waits = end(kernel, ctx, ok_outcome(ctx, response, since=ctx.started, candidate=candidate))
    if waits:
        await settle(waits)
    return response


async def run_stream(
    kernel: Kernel, ctx: RequestContext, handle: AsyncChatStream
) -> AsyncIterator[StreamEvent]:
    """One streamed chat; yields the caller's events. Fails over only until the
    first visible event; after it, a failure ends the stream with an
    :class:`ErrorEvent` and a raised error, never a silent truncation."""
    outcome: Outcome | None = None
    partial: Response | None = None
    leaving: BaseException | None = None
    try:
        start(kernel, ctx)
        hit = await lookup(kernel, ctx) if kernel.cache is not None else None
        if hit is not None:
            handle.response = hit
            handle.first_event_latency = hit.latency
            for replayed in replay(hit):
                yield replayed
            responded(kernel, ctx, hit)
            outcome = ok_outcome(
                ctx, hit, since=ctx.started, candidate=None, first_event_latency=hit.latency
            )
            return

        async def open_stream(
            provider: Provider, routed: ChatRequest
        ) -> tuple[AsyncIterator[StreamEvent], list[StreamEvent]]:
            """Open a stream and read up to its first event a user would see; events
            the kernel keeps to itself (metadata, usage) are held with it."""
            events = aiter(provider.stream(routed))
            held: list[StreamEvent] = []
            try:
                async for event in events:
                    held.append(event)
                    if not isinstance(event, _KEPT):
                        break
            except BaseException:
                await aclose(events)
                raise
            return events, held

        candidate, (events, held), end_attempt = await run_candidates(
            kernel, ctx, open_stream, stream=True
        )
        builder = ResponseBuilder(provider=candidate.provider, model=candidate.model)
        first = handle.first_event_latency = time.monotonic() - ctx.started
        try:
            for event in held:
                builder.add(event)
                if not isinstance(event, _KEPT):
                    yield event
            deadline = ctx.deadline
            async for event in events:
                builder.add(event)
                if not isinstance(event, _KEPT):
                    yield event
                if time.monotonic() > deadline:
                    raise ProviderTimeoutError(
                        "the call's total deadline ran out mid-stream", retryable=False
                    )
            response = builder.build()
        except ProviderError as exc:
            fill(exc, candidate)
            partial = _partial(builder)
            end_attempt(
                Outcome(
                    status="error",
                    error=exc,
                    response=partial,
                    usage=partial.usage if partial else None,
                    headers=exc.headers or builder.headers,
                    latency=time.monotonic() - end_attempt.attempt.started,
                    first_event_latency=first,
                    candidate=candidate,
                    attempts=1,
                ),
                exc,
            )
            yield ErrorEvent(error=exc)
            raise
        except BaseException as exc:
            partial = _partial(builder)
            end_attempt(
                Outcome(
                    status=status_of(exc),
                    error=exc if not isinstance(exc, GeneratorExit) else None,
                    response=partial,
                    usage=partial.usage if partial else None,
                    headers=builder.headers,
                    latency=time.monotonic() - end_attempt.attempt.started,
                    first_event_latency=first,
                    candidate=candidate,
                    attempts=1,
                )
            )
            raise
        finally:
            await aclose(events)
        response = finish(kernel, ctx, candidate, response)
        handle.response = response
        end_attempt(
            ok_outcome(
                ctx,
                response,
                since=end_attempt.attempt.started,
                candidate=candidate,
                first_event_latency=first,
            )
        )
        request = ctx.request
        assert isinstance(request, ChatRequest)
        if kernel.cache is not None:
            await store(kernel, request, response)
        responded(kernel, ctx, response)
        outcome = ok_outcome(
            ctx, response, since=ctx.started, candidate=candidate, first_event_latency=first
        )
        yield UsageEvent(usage=response.usage, cost=response.cost)
        yield FinishEvent(finish_reason=response.finish_reason)
    except BaseException as exc:
        leaving = exc
        if outcome is None:  # an ending after the final events keeps its "ok"
            outcome = failed(ctx, exc, partial)
        raise
    finally:
        waits = end(kernel, ctx, outcome if outcome is not None else failed(ctx, GeneratorExit()))
        if waits:
            # the stream's last step, before its reader sees it end (never while it
            # is being closed: a reader that stopped waits for nothing)
            await settle(waits, leaving)


def _partial(builder: ResponseBuilder) -> Response | None:
    try:
        return builder.build()
    except Exception:
        return None


def replay(response: Response) -> Iterator[StreamEvent]:
    """A stored response as stream events: how cached answers stream. Thinking and
    signatures are replayed too, so a rebuilt answer can be sent back."""
    thinking = (p for p in response.message.content if isinstance(p, ReasoningPart))
    for index, part in enumerate(thinking):
        yield ReasoningDelta(
            text=part.text, signature=part.signature, redacted=part.redacted, index=index
        )
    if response.text:
        yield TextDelta(text=response.text)
    for index, call in enumerate(response.tool_calls):
        yield ToolCallDelta(
            index=index,
            id=call.id,
            name=call.name,
            arguments=call.arguments_json,
            signature=call.signature,
        )
    yield UsageEvent(usage=response.usage, cost=response.cost)
    yield FinishEvent(finish_reason=response.finish_reason)


async def aclose(events: AsyncIterator[Any]) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):  # closing must not hide the real error
            await close()


_stamina_module: Any = None


def _stamina() -> Any:
    """stamina, imported on the first retry rather than at startup. Its
    instrumentation (retry hooks) is the application's to configure; the kernel
    logs ``llmkernel.retry.scheduled`` itself."""
    global _stamina_module
    if _stamina_module is None:
        import stamina

        _stamina_module = stamina
    return _stamina_module


__all__ = ["replay", "run_chat", "run_embed", "run_stream"]
