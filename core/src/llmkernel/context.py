"""What plugins see of one call while it runs: the context, its attempts, how each
ended, and the small value types the routing hooks return.

::

    RequestContext   one per call (chat, stream or embed): who asks, the deadline,
    │                the candidates, what was dropped and why, a ``state`` dict
    └── Attempt      one per try on one candidate: gates acquire before it and
                     release after it, exactly once, however it ends
    Outcome          how an attempt or a whole call ended (ok, error, refused,
                     cancelled, abandoned), with usage, cost, timings and headers
    Drop             a candidate left out, and why (a filter, a gate, a rule)
    Decision         what to do after a failed attempt: retry, next, raise
    Gate             the protocol of the objects ``provide_gate`` returns
    Strategy         the protocol of the objects a strategy factory returns

Contexts and attempts compare and hash by identity, so a plugin can key its own
dicts by them to tie ``on_request``, gates, ``on_error`` and the end hooks to one
call.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, runtime_checkable

import attrs

from llmkernel.routing import Candidate
from llmkernel.types import (
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    Response,
    TokenCount,
    Usage,
)

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel

CallKind: TypeAlias = Literal["chat", "stream", "embed"]
Status: TypeAlias = Literal["ok", "error", "refused", "cancelled", "abandoned"]
Action: TypeAlias = Literal["retry", "next", "raise"]

#: Output tokens assumed for a worst case when neither the request (``max_tokens``)
#: nor the model's declared capabilities say how many it may write.
DEFAULT_MAX_OUTPUT_TOKENS = 4096
#: The most input tokens one image can cost at any provider we know (OpenAI's
#: patch-based models at high detail, Anthropic's ~1,600): an upper bound, used when a
#: count is an estimate.
IMAGE_TOKENS_BOUND = 6000

#: Request ids: random per process (unique across processes sharing a ledger), then
#: a counter (cheap per call).
_ID_PREFIX = os.urandom(6).hex()
_ids = itertools.count(1)


def new_ids() -> None:
    """Request ids of a forked child are its own (the kernel calls this after fork)."""
    global _ID_PREFIX, _ids
    _ID_PREFIX = os.urandom(6).hex()
    _ids = itertools.count(1)


@attrs.define(kw_only=True, eq=False)
class Attempt:
    """One try of one candidate. ``number`` counts tries on this candidate (from 1),
    ``index`` tries in the whole call (from 1); ``request`` is routed (its ``model``
    is the provider's id). ``state`` is for gates and plugins."""

    candidate: Candidate
    number: int
    index: int
    request: ChatRequest | EmbeddingRequest
    started: float = attrs.field(factory=time.monotonic)
    stream: bool = False
    state: dict[str, Any] = attrs.field(factory=dict)

    def __repr__(self) -> str:
        return f"<Attempt {self.index} on {self.candidate.qualified} (#{self.number})>"


@attrs.frozen(kw_only=True)
class Drop:
    """A candidate left out of a call: by a filter, a gate's refusal, or a fallback
    rule. ``by`` names the plugin; ``error`` is the refusal when a gate refused."""

    candidate: Candidate
    reason: str
    by: str = ""
    error: Exception | None = None


@attrs.frozen(kw_only=True)
class Decision:
    """After a failed attempt: ``retry`` the same candidate (after ``wait`` seconds;
    ``None`` lets the kernel back off), go to the ``next`` candidate, or ``raise``.
    ``drop`` removes candidates from the ones still to try (with reasons)."""

    action: Action
    wait: float | None = None
    reason: str = ""
    drop: tuple[Drop, ...] = ()


@attrs.define(kw_only=True, eq=False)
class Outcome:
    """How an attempt or a call ended; read-only by convention (not frozen: one or
    two are made on every call, and a frozen attrs class costs twice as much to
    build).

    ``status``: ``ok``; ``error`` (``error`` holds it); ``refused`` (a gate or every
    candidate refused); ``cancelled`` (the caller's task was cancelled); or
    ``abandoned`` (the caller stopped reading a stream). ``response`` is the final
    response, or what a cut stream had produced so far. ``latency`` is seconds from
    the start of the attempt or call; ``first_event_latency`` the seconds to a
    stream's first event the user saw. ``headers`` are the provider's HTTP response
    headers (also on errors), lower-case names.
    """

    status: Status
    error: BaseException | None = None
    response: Response | EmbeddingResponse | None = None
    usage: Usage | None = None
    cost: Decimal | None = None
    latency: float = 0.0
    first_event_latency: float | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    candidate: Candidate | None = None
    cached: bool = False
    attempts: int = 0


@attrs.define(kw_only=True, eq=False)
class RequestContext:
    """One call, from the API to its end: passed as ``ctx`` to every per-request hook.

    ``request`` is as the user made it (``metadata`` says who asks). ``deadline`` is
    a ``time.monotonic()`` value bounding the whole call. ``candidates`` are the
    ones left after filters, in the strategy's order; ``dropped`` says what was left
    out and why. ``state`` is a dict for plugins (key it by your plugin's name).
    Token counts and prices are computed once per candidate and shared by every
    plugin that asks.
    """

    id: str
    kind: CallKind
    kernel: Kernel = attrs.field(repr=False)
    request: ChatRequest | EmbeddingRequest = attrs.field(repr=False)
    started: float = attrs.field(factory=time.monotonic)
    started_at: float = attrs.field(factory=time.time)
    deadline: float = 0.0
    attempts: list[Attempt] = attrs.field(factory=list)
    dropped: list[Drop] = attrs.field(factory=list)
    candidates: list[Candidate] = attrs.field(factory=list)
    state: dict[str, Any] = attrs.field(factory=dict, repr=False)
    #: the experiment's variant this call was assigned (``[models.NAME] variants``)
    variant: str | None = None
    _tokens: dict[Candidate, TokenCount] = attrs.field(factory=dict, repr=False, init=False)

    @classmethod
    def new(
        cls,
        kernel: Kernel,
        kind: CallKind,
        request: ChatRequest | EmbeddingRequest,
        timeout: float | None = None,
    ) -> RequestContext:
        """The context of one call; ``timeout`` (seconds) bounds the whole call,
        default ``[retry] timeout``."""
        if timeout is None:
            timeout = kernel.config.retry.timeout
        elif isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            from llmkernel.convert import invalid

            raise invalid("timeout", f"must be a positive number of seconds, not {timeout!r}")
        now = time.monotonic()
        return cls(
            id=f"req_{_ID_PREFIX}{next(_ids):x}",
            kind=kind,
            kernel=kernel,
            request=request,
            started=now,
            deadline=now + timeout,
        )

    @property
    def metadata(self) -> Mapping[str, str]:
        """Who is asking: ``tenant``, ``key`` and whatever the application adds."""
        return self.request.metadata

    def remaining(self) -> float:
        """Seconds left before the call's deadline (negative once past it)."""
        return self.deadline - time.monotonic()

    def token_count(self, candidate: Candidate) -> TokenCount:
        """The request's input tokens for ``candidate``'s model (``count_tokens``),
        counted once per call. An embedding request counts its inputs."""
        count = self._tokens.get(candidate)
        if count is None:
            count = self._tokens[candidate] = self.kernel.models.count(self.request, candidate)
        return count

    def input_tokens(self, candidate: Candidate) -> int:
        return self.token_count(candidate).tokens

    def price(self, candidate: Candidate) -> Any:
        """The candidate's price object (``cost(usage) -> Decimal``), or ``None``
        when the model is unpriced."""
        return self.kernel.models.price(candidate)

    def max_output_tokens(self, candidate: Candidate) -> int:
        """The most output tokens this call may produce on ``candidate``: the
        request's ``max_tokens``, else the model's declared maximum, else
        :data:`DEFAULT_MAX_OUTPUT_TOKENS`. Embeddings produce none."""
        if isinstance(self.request, EmbeddingRequest):
            return 0
        if self.request.max_tokens is not None:
            return self.request.max_tokens
        caps = self.kernel.models.capabilities(candidate)
        if caps is not None and caps.max_output_tokens:
            return caps.max_output_tokens
        return DEFAULT_MAX_OUTPUT_TOKENS

    def input_tokens_bound(self, candidate: Candidate) -> int:
        """The most input tokens this request can be billed on ``candidate``: an exact
        count as it is; an estimate raised to the request's UTF-8 byte length (no
        tokenizer makes more tokens than bytes), plus a bound per image."""
        count = self.token_count(candidate)
        if count.exact:
            return count.tokens
        return max(count.tokens, _byte_bound(self.request))

    def worst_case_cost(self, candidate: Candidate) -> Decimal | None:
        """The most this call can cost on ``candidate``: :meth:`input_tokens_bound`
        plus :meth:`max_output_tokens`, at the model's price, billed the dearest way;
        ``None`` when unpriced."""
        price = self.price(candidate)
        if price is None:
            return None
        tokens_in = self.input_tokens_bound(candidate)
        tokens_out = self.max_output_tokens(candidate)
        # the dearest way these tokens can be billed: output as reasoning where that
        # costs more, input written to the prompt cache (1-hour writes) where the
        # request asks for caching
        variants = [
            Usage(input_tokens=tokens_in, output_tokens=tokens_out),
            Usage(input_tokens=tokens_in, output_tokens=tokens_out, reasoning_tokens=tokens_out),
        ]
        if _asks_for_caching(self.request):
            variants += [
                Usage(
                    input_tokens=tokens_in,
                    output_tokens=tokens_out,
                    reasoning_tokens=r,
                    cache_write_tokens=tokens_in,
                    cache_write_1h_tokens=tokens_in,
                )
                for r in (0, tokens_out)
            ]
        cost: Decimal = max(price.cost(usage) for usage in variants)
        return cost

    def __repr__(self) -> str:
        return f"<RequestContext {self.id} {self.kind} {self.request.model!r}>"


def _byte_bound(request: ChatRequest | EmbeddingRequest) -> int:
    """Every byte the request sends as text (a token is at least one byte), with room
    for the framing providers add per message and tool, and the most any image costs."""
    import json

    if isinstance(request, EmbeddingRequest):
        return sum(len(text.encode()) + 8 for text in request.inputs)
    from llmkernel.types import ImagePart, TextPart

    total = 0
    for message in request.messages:
        total += 16  # role and the message's special tokens
        for part in message.content:
            if isinstance(part, TextPart):
                total += len(part.text.encode())
            elif isinstance(part, ImagePart):
                total += IMAGE_TOKENS_BOUND
            else:
                total += len(repr(part).encode())
        for call in message.tool_calls:
            total += 16 + len(call.name.encode()) + len(call.arguments_json.encode())
    for tool in request.tools:
        total += 64 + len(tool.name.encode()) + len(tool.description.encode())
        total += len(json.dumps(tool.parameters).encode())
    if request.response_format is not None:
        total += 64 + len(json.dumps(request.response_format.schema or {}).encode())
    return total


def _asks_for_caching(request: ChatRequest | EmbeddingRequest) -> bool:
    if not isinstance(request, ChatRequest):
        return False
    if any(tool.cache_control for tool in request.tools):
        return True
    return any(getattr(part, "cache_control", None) for m in request.messages for part in m.content)


@runtime_checkable
class Gate(Protocol):
    """What ``provide_gate`` returns: asked before every attempt, told after it.

    ``acquire`` may wait (within ``ctx.deadline``) or raise
    :class:`~llmkernel.errors.RefusedError`. ``release`` is called exactly once for
    every ``acquire`` that returned, in reverse order of acquiring, however the
    attempt ended. ``release`` is sync and must not block: hand I/O to a thread.
    """

    async def acquire(self, ctx: RequestContext, attempt: Attempt) -> None: ...

    def release(self, ctx: RequestContext, attempt: Attempt, outcome: Outcome) -> None: ...


@runtime_checkable
class Strategy(Protocol):
    """What a strategy factory returns: orders the candidates left after the
    filters into the fallback chain to try (it may drop some, never add)."""

    def select(self, ctx: RequestContext, candidates: list[Candidate]) -> list[Candidate]: ...


__all__ = [
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "IMAGE_TOKENS_BOUND",
    "Attempt",
    "Decision",
    "Drop",
    "Gate",
    "Outcome",
    "RequestContext",
    "Strategy",
]
