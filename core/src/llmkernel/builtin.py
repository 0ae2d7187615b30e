"""The kernel's own hook implementations, registered first in every kernel.

Each runs last, so any plugin can replace the default ordering and token estimate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel.hookspecs import hookimpl
from llmkernel.types import ImagePart, TextPart, TokenCount

if TYPE_CHECKING:
    from llmkernel.context import Attempt, Decision, RequestContext
    from llmkernel.kernel import Kernel
    from llmkernel.routing import Candidate
    from llmkernel.strategies import StrategyRegistry
    from llmkernel.types import ChatRequest, EmbeddingRequest

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4
IMAGE_TOKENS = 85


@hookimpl(trylast=True)
def select_provider(candidates: list[Candidate]) -> list[Candidate]:
    """Config order: the first candidate first, the rest as fallbacks."""
    return candidates


@hookimpl
def register_strategies(registry: StrategyRegistry) -> None:
    """The default strategy, ``priority``: config order."""
    from llmkernel.config import DEFAULT_STRATEGY
    from llmkernel.strategies import PriorityStrategy

    registry.add(DEFAULT_STRATEGY, PriorityStrategy)


@hookimpl(trylast=True)
def decide(
    kernel: Kernel,
    ctx: RequestContext,
    attempt: Attempt,
    error: Exception,
    remaining: list[Candidate],
) -> Decision:
    """``[routing.fallback]``: the rule for the error's kind (default: ``retry`` a
    retryable error, ``next`` for one worth another candidate, else ``raise``; a
    timeout or a rate limit moves on at once while other candidates wait, rather than
    waiting out a ``Retry-After`` on the same deployment), attempts per candidate
    (default ``[retry] attempts``) and in all; a context-window error goes only to
    candidates whose known window is larger (unknown windows are kept)."""
    from llmkernel.context import Decision, Drop
    from llmkernel.errors import ContextWindowExceededError, ProviderError

    fallback = kernel.config.routing.fallback
    kind = getattr(error, "kind", "provider")
    rule = fallback.rules.get(kind)
    if rule is None:
        retryable = bool(getattr(error, "retryable", False))
        if kind in ("timeout", "rate_limit") and remaining:
            rule = "next"
        elif retryable:
            rule = "retry"
        else:
            rule = "next" if getattr(error, "fallback", False) else "raise"
    if rule == "raise":
        return Decision(action="raise", reason=f"[routing.fallback] {kind} = raise")
    sent = len(ctx.attempts) - sum(1 for d in ctx.dropped if d.error is not None)
    if sent >= fallback.max_attempts:
        return Decision(action="raise", reason="[routing.fallback] max_attempts reached")
    per_candidate = fallback.attempts_per_candidate or kernel.config.retry.attempts
    if rule == "retry" and attempt.number < per_candidate:
        wait = error.retry_after if isinstance(error, ProviderError) else None
        return Decision(action="retry", wait=wait)
    drops: tuple[Drop, ...] = ()
    if isinstance(error, ContextWindowExceededError):
        caps = kernel.models.capabilities(attempt.candidate)
        window = caps.context_window if caps is not None else None
        for candidate in remaining:
            other = kernel.models.capabilities(candidate)
            size = other.context_window if other is not None else None
            if window is not None and size is not None and size <= window:
                reason = (
                    f"context window {size or 'unknown'} is not larger than "
                    f"{attempt.candidate.qualified}'s ({window or 'unknown'})"
                )
                drops += (Drop(candidate=candidate, reason=reason, by="llmkernel"),)
    return Decision(action="next", drop=drops)


@hookimpl(trylast=True)
def count_tokens(request: ChatRequest | EmbeddingRequest) -> TokenCount:
    """A rough estimate (about four characters a token) when nothing better is
    installed; marked approximate."""
    from llmkernel.types import EmbeddingRequest

    if isinstance(request, EmbeddingRequest):
        chars = sum(len(text) for text in request.inputs)
        return TokenCount(
            tokens=-(-chars // CHARS_PER_TOKEN),
            exact=False,
            method="estimate: about 4 characters per token",
        )
    chars = 0
    images = 0
    for message in request.messages:
        for part in message.content:
            if isinstance(part, TextPart):
                chars += len(part.text)
            elif isinstance(part, ImagePart):
                images += 1
        for call in message.tool_calls:
            chars += len(call.name) + len(call.arguments_json)
    for tool in request.tools:
        chars += len(tool.name) + len(tool.description) + len(str(tool.parameters))
    tokens = -(-chars // CHARS_PER_TOKEN) + MESSAGE_OVERHEAD * len(request.messages)
    return TokenCount(
        tokens=tokens + images * IMAGE_TOKENS,
        exact=False,
        method="estimate: about 4 characters per token",
    )
