"""The handles a streamed chat returns: :class:`AsyncChatStream` (``async for``) and
:class:`ChatStream` (``for``), and :func:`replay`, how a stored answer streams."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from llmkernel.call import Call
from llmkernel.context import RequestContext
from llmkernel.types import (
    FinishEvent,
    ReasoningDelta,
    ReasoningPart,
    Response,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    UsageEvent,
)

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel
    from llmkernel.types import ChatRequest

__all__ = ["AsyncChatStream", "ChatStream", "replay"]


class AsyncChatStream:
    """An async iterator of stream events; ``response`` is set when it ends."""

    def __init__(self, kernel: Kernel, request: ChatRequest, timeout: float | None = None) -> None:
        self.request = request
        self.response: Response | None = None
        self.first_event_latency: float | None = None
        self.context = RequestContext.new(kernel, "stream", request, timeout)
        self._kernel = kernel
        self._events = Call(kernel, self.context).stream(self)

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
