"""Retries on one candidate, beside the call's steps: stamina's backoff (the
``[retry]`` settings: ``initial_wait``, ``max_wait``, ``jitter``, doubling), or the wait a
``decide`` answer names (``Retry-After``, exactly), all inside the call's deadline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmkernel._logging import log
from llmkernel.call import leave_or_raise
from llmkernel.context import Attempt, Decision
from llmkernel.errors import ProviderError
from llmkernel.errors import TimeoutError as ProviderTimeoutError

if TYPE_CHECKING:
    from llmkernel.call import AttemptEnd, Call
    from llmkernel.routing import Candidate

__all__ = ["fits", "retried"]

#: How far past the deadline the waits' own timer is set, so an attempt's timer
#: (set at the deadline) fires first.
_PAST_DEADLINE = 0.05


async def retried(
    call: Call, first: Attempt, kind: str, queue: list[Candidate], error: ProviderError
) -> tuple[Any, AttemptEnd]:
    """After a failed first attempt: the ``decide`` hooks choose; retries run in
    ``stamina.retry_context`` with the ``[retry]`` backoff (or the decision's
    ``wait``, ``Retry-After`` exactly), all inside the call's deadline. Raises
    :class:`_Leave` to go to the next candidate, or the error to stop."""
    ctx, retry = call.ctx, call.setup.config.retry
    last = [first]
    decision = [call.decide(first, error, queue)]
    if decision[0].action != "retry" or not fits(call, decision[0], first):
        raise leave_or_raise(error, decision[0]) from None
    pending = [error]

    def on(exc: Exception) -> bool | float:
        """stamina's ``on``: False to stop; True for its backoff; or the wait."""
        if pending:
            pending.clear()
        elif isinstance(exc, ProviderError):
            decision[0] = call.decide(last[-1], exc, queue)
        else:
            return False
        chosen = decision[0]
        if chosen.action != "retry":
            return False
        if not fits(call, chosen, last[-1]):
            decision[0] = Decision(action="next", reason="no time left to retry")
            return False
        log.info(
            "llmkernel.retry.scheduled",
            provider=first.candidate.provider,
            model=first.candidate.model,
            attempt=last[-1].number + 1,
            wait=None if chosen.wait is None else round(chosen.wait, 3),
            error=type(exc).__name__,
        )
        return True if chosen.wait is None else max(0.0, chosen.wait)

    import asyncio

    stamina = _stamina()
    try:
        # the waits end at the deadline (an attempt's own timer fires first)
        async with asyncio.timeout_at(ctx.deadline + _PAST_DEADLINE):
            async for trial in stamina.retry_context(
                on=on,
                attempts=None,
                timeout=None,
                wait_initial=retry.initial_wait,
                wait_max=retry.max_wait,
                wait_jitter=retry.jitter,
                wait_exp_base=2.0,
            ):
                with trial:
                    if pending:
                        raise error
                    attempt = call.new_attempt(first.candidate, first.request, kind)
                    last.append(attempt)
                    return await call.attempt(attempt, kind, queue)
    except ProviderError as exc:
        raise leave_or_raise(exc, decision[0]) from None
    except TimeoutError:  # the deadline ran out during a wait
        raise ProviderTimeoutError("the call's total deadline ran out", retryable=False) from None
    raise AssertionError("unreachable: stamina re-raises the last failure")


def fits(call: Call, decision: Decision, attempt: Attempt) -> bool:
    """Whether the wait before another attempt ends before the deadline (stamina's
    backoff is judged by its jitter-less lower bound)."""
    if decision.wait is not None:
        return max(0.0, decision.wait) < call.ctx.remaining()
    retry = call.setup.config.retry
    lower = min(retry.max_wait, retry.initial_wait * 2.0 ** (attempt.number - 1))
    return lower < call.ctx.remaining()


_stamina_module: Any = None


def _stamina() -> Any:
    """stamina, imported on the first retry rather than at startup. Its own retry
    hook would print to stdout through an unconfigured structlog; the kernel logs
    ``llmkernel.retry.scheduled`` itself (see :mod:`llmkernel._logging`)."""
    global _stamina_module
    if _stamina_module is None:
        import stamina

        from llmkernel._logging import quiet_stamina

        quiet_stamina()
        _stamina_module = stamina
    return _stamina_module
