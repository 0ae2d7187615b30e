"""Streamed chats: :func:`run`, a call's steps for a stream (as ``Call.chat`` is for a
chat); the handles users get, :class:`AsyncChatStream` (``async for``) and
:class:`ChatStream` (``for``); and :func:`replay`, how a stored answer streams.

A stream runs the call's steps only until its first visible event; after it, a
failure ends the stream with an :class:`~llmkernel.types.ErrorEvent` and a raised
error, never a silent truncation. A stream that ends early is billed for what it
delivered (:func:`delivered`)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

from llmkernel.call import KEPT, Call, aclose_events, fill, settle, status_of
from llmkernel.context import Outcome, RequestContext
from llmkernel.errors import ProviderError
from llmkernel.errors import TimeoutError as ProviderTimeoutError
from llmkernel.streaming import ResponseBuilder
from llmkernel.types import (
    ChatRequest,
    ErrorEvent,
    FinishEvent,
    Message,
    ReasoningDelta,
    ReasoningPart,
    Response,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCallDelta,
    UsageEvent,
    replace,
)

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel
    from llmkernel.routing import Candidate

__all__ = ["AsyncChatStream", "ChatStream", "delivered", "replay", "run"]


class AsyncChatStream:
    """An async iterator of stream events; ``response`` is set when it ends."""

    def __init__(self, kernel: Kernel, request: ChatRequest, timeout: float | None = None) -> None:
        self.request = request
        self.response: Response | None = None
        self.first_event_latency: float | None = None
        self.context = RequestContext.new(kernel, "stream", request, timeout)
        self._kernel = kernel
        self._events = run(Call(kernel, self.context), self)

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def __anext__(self) -> StreamEvent:
        self._kernel._bind_loop()
        return await anext(self._events)

    async def aclose(self) -> None:
        await self._events.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def collect(self) -> Response:
        """Drain the stream and return the final response."""
        async for _ in self:
            pass
        assert self.response is not None
        return self.response


class ChatStream:
    """The sync face of :class:`AsyncChatStream`."""

    def __init__(self, kernel: Kernel, stream: AsyncChatStream) -> None:
        self._kernel = kernel
        self._stream = stream

    @property
    def response(self) -> Response | None:
        return self._stream.response

    @property
    def request(self) -> ChatRequest:
        return self._stream.request

    @property
    def first_event_latency(self) -> float | None:
        return self._stream.first_event_latency

    def __iter__(self) -> Iterator[StreamEvent]:
        return self

    def __next__(self) -> StreamEvent:
        try:
            return self._kernel._portal.call(anext(self._stream))
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        self._kernel._portal.call(self._stream.aclose())

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def collect(self) -> Response:
        for _ in self:
            pass
        assert self.response is not None
        return self.response


async def run(call: Call, handle: AsyncChatStream) -> AsyncIterator[StreamEvent]:
    """One streamed chat; yields the caller's events. Fails over only until the
    first visible event; after it, a failure ends the stream with an
    :class:`ErrorEvent` and a raised error, never a silent truncation."""
    ctx, setup = call.ctx, call.setup
    outcome: Outcome | None = None
    partial: Response | None = None
    leaving: BaseException | None = None
    setup.active += 1
    try:
        call.start()
        hit = await call.lookup() if setup.cache is not None else None
        if hit is not None:
            handle.response = hit
            handle.first_event_latency = hit.latency
            for replayed in replay(hit):
                yield replayed
            call.responded(hit)
            outcome = call.ok(hit, ctx.started, None, hit.latency)
            return
        candidate, (events, held), end_attempt = await call.attempts("stream")
        builder = ResponseBuilder(provider=candidate.provider, model=candidate.model)
        first = handle.first_event_latency = time.monotonic() - ctx.started
        try:
            for event in held:
                builder.add(event)
                if not isinstance(event, KEPT):
                    yield event
            deadline = ctx.deadline
            async for event in events:
                builder.add(event)
                if not isinstance(event, KEPT):
                    yield event
                if time.monotonic() > deadline:
                    raise ProviderTimeoutError(
                        "the call's total deadline ran out mid-stream", retryable=False
                    )
            response = builder.build()
        except BaseException as exc:
            if isinstance(exc, ProviderError):
                fill(exc, candidate)
            partial = delivered(call, builder, candidate)
            end_attempt(
                Outcome(
                    status="error" if isinstance(exc, ProviderError) else status_of(exc),
                    error=None if isinstance(exc, GeneratorExit) else exc,
                    response=partial,
                    usage=partial.usage if partial else None,
                    cost=partial.cost if partial else None,
                    headers=getattr(exc, "headers", None) or builder.headers,
                    latency=time.monotonic() - end_attempt.attempt.started,
                    first_event_latency=first,
                    candidate=candidate,
                    attempts=1,
                ),
                exc,
            )
            if isinstance(exc, ProviderError):
                yield ErrorEvent(error=exc)
            raise
        finally:
            await aclose_events(events)
        response = call.finish(candidate, response)
        handle.response = response
        end_attempt(call.ok(response, end_attempt.attempt.started, candidate, first))
        if setup.cache is not None:
            await call.store(response)
        call.responded(response)
        outcome = call.ok(response, ctx.started, candidate, first)
        yield UsageEvent(usage=response.usage, cost=response.cost)
        yield FinishEvent(finish_reason=response.finish_reason)
    except BaseException as exc:
        leaving = exc
        if outcome is None:  # an ending after the final events keeps its "ok"
            outcome = call.failed(exc, partial)
        raise
    finally:
        setup.active -= 1
        waits = call.end(outcome if outcome is not None else call.failed(GeneratorExit(), partial))
        if waits:
            # the stream's last step, before its reader sees it end (never while it is
            # being closed: a reader that stopped waits for nothing)
            await settle(waits, leaving)


def delivered(call: Call, builder: ResponseBuilder, candidate: Candidate) -> Response | None:
    """What a stream that ended early delivered, billed: the provider's usage
    where it reported it, else (or where it reported less) the input counted for
    the request and the output counted from the streamed text, tool arguments and
    reasoning, marked ``estimated``."""
    try:
        partial = builder.build()
    except Exception:
        partial = None
        text = "".join(builder.text)
    else:
        text = _streamed_text(partial) if partial is not None else ""
    if partial is None and not text:
        return None
    usage = builder.usage
    counted_in = usage.input_tokens or call.ctx.token_count(candidate).tokens
    counted_out = usage.output_tokens
    if text:

        def count(words: str) -> int:
            said = Message(role="assistant", content=(TextPart(text=words),))
            return call.models.count(
                ChatRequest(model=candidate.model, messages=(said,)), candidate
            ).tokens

        # the text's tokens, without the framing a counter adds for a message
        counted_out = max(counted_out, count(text) - count(""))
    estimated = counted_in != usage.input_tokens or counted_out != usage.output_tokens
    usage = replace(
        usage,
        input_tokens=counted_in,
        output_tokens=counted_out,
        estimated=usage.estimated or estimated,
    )
    if partial is None:
        partial = Response(message=Message(role="assistant", content=(TextPart(text=text),)))
    return replace(
        partial,
        usage=usage,
        provider=candidate.provider,
        model=partial.model or candidate.model,
        cost=call.models.cost(candidate, usage),
    )


def _streamed_text(response: Response) -> str:
    """Everything a response's stream carried: text, reasoning, tool calls."""
    from llmkernel.types import ReasoningPart

    parts = [p.text for p in response.message.content if isinstance(p, TextPart | ReasoningPart)]
    parts += [c.name + c.arguments_json for c in response.tool_calls]
    return "".join(parts)


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
