"""The mock provider: simulated replies without network, deterministic for a seed.

``mock/echo`` answers with the last user message; ``mock/embed`` gives embeddings;
any other model name gives generated text of ``output_tokens`` words. Offered tools
are called with arguments made from their schema; after a tool result it answers in
text. Latency, time to first token, pacing and failures come from the settings.

Tests can script it exactly: ``provider.enqueue("text", RateLimitError(...), ...)``
sets the next answers in order, and ``provider.history`` keeps every request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import struct
from collections.abc import AsyncIterator
from typing import Any

import attrs

from llmkernel import errors
from llmkernel.options import parse_options
from llmkernel.provider import Provider, ProviderConfig
from llmkernel.types import (
    Capabilities,
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    FinishEvent,
    Health,
    Message,
    MetadataEvent,
    ModelInfo,
    ReasoningDelta,
    ReasoningPart,
    Response,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageEvent,
)
from llmkernel_mock.generate import (
    estimate_input_tokens,
    generated_text,
    json_text,
    last_user_text,
    rng_for,
    value_for,
)
from llmkernel_mock.settings import MockSettings


@attrs.frozen(kw_only=True)
class MockReply:
    """A scripted answer: text and/or tool calls; ``fail_after`` makes a stream fail
    with ``error`` after that many text pieces."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage | None = None
    finish_reason: str | None = None
    fail_after: int | None = None
    error: errors.ProviderError | None = None


Scripted = str | MockReply | errors.ProviderError


@attrs.frozen(kw_only=True)
class _Plan:
    reasoning: str
    text: str
    tool_calls: tuple[ToolCall, ...]
    usage: Usage
    finish_reason: Any
    fail_after: int | None = None
    error: errors.ProviderError | None = None


class MockProvider(Provider):
    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self.settings = parse_options(
            MockSettings, config.options, where=config.where or f"[providers.{config.name}]"
        )
        self._failures = random.Random(self.settings.seed)
        self._script: list[Scripted] = []
        self.history: list[ChatRequest] = []
        self._served = 0
        self._headers = {k.lower(): str(v) for k, v in self.settings.headers.items()}

    # ------------------------------------------------------------ test helpers

    def enqueue(self, *items: Scripted) -> None:
        """Script the next answers, in order: a string is a text reply, a
        ``ProviderError`` is raised, a :class:`MockReply` gives full control."""
        self._script.extend(items)

    # ------------------------------------------------------------ the provider

    async def chat(self, request: ChatRequest) -> Response:
        plan = await self._begin(request, streaming=False)
        if plan.fail_after is not None and plan.error is not None:
            raise plan.error
        await self._pace(len(plan.text.split()) + len(plan.reasoning.split()))
        content: list[Any] = []
        if plan.reasoning:
            content.append(ReasoningPart(text=plan.reasoning, signature=self._signature(plan)))
        if plan.text:
            content.append(TextPart(text=plan.text))
        parsed = None
        if request.response_format is not None and request.response_format.type != "text":
            parsed = json.loads(plan.text)
        return Response(
            message=Message(role="assistant", content=tuple(content), tool_calls=plan.tool_calls),
            finish_reason=plan.finish_reason,
            usage=plan.usage,
            id=f"mock-{self._served}",
            model=request.model,
            parsed=parsed,
            headers=self._headers,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        plan = await self._begin(request, streaming=True)
        yield MetadataEvent(
            id=f"mock-{self._served}", model=request.model, headers=self._headers or None
        )
        if self.settings.time_to_first_token:
            await asyncio.sleep(self.settings.time_to_first_token)
        delay = 1.0 / self.settings.tokens_per_second if self.settings.tokens_per_second else 0.0
        if plan.reasoning:
            for word in _pieces(plan.reasoning):
                yield ReasoningDelta(text=word)
            yield ReasoningDelta(signature=self._signature(plan))
        for count, piece in enumerate(_pieces(plan.text)):
            if plan.fail_after is not None and count >= plan.fail_after and plan.error:
                raise plan.error
            if delay and count:
                await asyncio.sleep(delay)
            yield TextDelta(text=piece)
        if plan.fail_after is not None and plan.error is not None:
            raise plan.error
        for index, call in enumerate(plan.tool_calls):
            arguments = call.arguments_json
            half = len(arguments) // 2
            yield ToolCallDelta(index=index, id=call.id, name=call.name, arguments=arguments[:half])
            yield ToolCallDelta(index=index, arguments=arguments[half:])
        yield UsageEvent(usage=plan.usage)
        yield FinishEvent(finish_reason=plan.finish_reason)

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        await self._begin_common(request.model, streaming=False)
        size = request.dimensions or self.settings.embedding_dimensions
        vectors = [_vector(self.settings.seed, text, size) for text in request.inputs]
        tokens = sum(max(1, len(text) // 4) for text in request.inputs)
        return EmbeddingResponse(
            vectors=vectors,
            model=request.model,
            usage=Usage(input_tokens=tokens),
            headers=self._headers,
        )

    async def list_models(self) -> list[ModelInfo]:
        return [
            ModelInfo(id=m, provider=self.name, capabilities=self.capabilities(m))
            for m in self.settings.models
        ]

    def declared_models(self) -> list[str]:
        return list(self.settings.models)

    def capabilities(self, model: str) -> Capabilities:
        return Capabilities(
            tools=self.settings.tool_calls,  # tool_calls = false: a model without tools
            images=True,
            documents=True,
            json_schema=True,
            reasoning=True,
            embeddings=model == "embed",
            context_window=128_000,
            max_output_tokens=16_384,
        )

    async def health(self) -> Health:
        return Health(ok=True, detail="simulated")

    # ------------------------------------------------------------ internals

    async def _begin_common(self, model: str, *, streaming: bool) -> Scripted | None:
        self._served += 1
        if self.settings.latency:
            await asyncio.sleep(self.settings.latency)
        if self._script:
            item = self._script.pop(0)
            if isinstance(item, errors.ProviderError):
                raise _named(item, self.name, model)
            return item
        if self.settings.failure_rate and self._failures.random() < self.settings.failure_rate:
            kind = self._failures.choice(self.settings.error_kinds)
            if kind != "mid_stream" or not streaming:
                raise self._error(kind, model)
            return MockReply(fail_after=2, error=self._error("network", model))
        return None

    async def _begin(self, request: ChatRequest, *, streaming: bool) -> _Plan:
        self.history.append(request)
        scripted = await self._begin_common(request.model, streaming=streaming)
        rng = rng_for(self.settings.seed, request)
        input_tokens = estimate_input_tokens(request)
        if isinstance(scripted, str):
            scripted = MockReply(text=scripted)
        if isinstance(scripted, MockReply) and (scripted.text or scripted.tool_calls):
            return self._plan(
                request, "", scripted.text, scripted.tool_calls, input_tokens, scripted
            )
        reasoning = generated_text(rng, 8) if request.reasoning is not None else ""
        calls: tuple[ToolCall, ...] = ()
        last = request.messages[-1]
        choice = request.tool_choice.mode if request.tool_choice else "auto"
        if request.tools and self.settings.tool_calls and last.role == "user" and choice != "none":
            tool = request.tools[0]
            if choice == "tool" and request.tool_choice is not None:
                tool = next((t for t in request.tools if t.name == request.tool_choice.name), tool)
            arguments = value_for(tool.parameters, rng, tool.name)
            digest = hashlib.sha256(f"{request.model}{last.text}".encode()).hexdigest()[:12]
            calls = (
                ToolCall(
                    id=f"call_{digest}",
                    name=tool.name,
                    arguments=arguments if isinstance(arguments, dict) else {},
                ),
            )
            text = ""
        elif last.role == "tool":
            text = f"The tool returned: {last.text}"
        elif request.response_format is not None and request.response_format.type != "text":
            text = json_text(request.response_format.schema, rng)
        elif request.model == "echo":
            text = last_user_text(request.messages)
        else:
            text = generated_text(rng, self.settings.output_tokens)
        return self._plan(
            request,
            reasoning,
            text,
            calls,
            input_tokens,
            scripted if isinstance(scripted, MockReply) else None,
        )

    def _plan(
        self,
        request: ChatRequest,
        reasoning: str,
        text: str,
        calls: tuple[ToolCall, ...],
        input_tokens: int,
        reply: MockReply | None,
    ) -> _Plan:
        finish: Any = "tool_calls" if calls else "stop"
        if request.max_tokens is not None and len(text.split()) > request.max_tokens:
            text = " ".join(text.split()[: request.max_tokens])
            finish = "length"
        reasoning_tokens = len(reasoning.split())
        output = (
            len(text.split())
            + reasoning_tokens
            + sum(max(1, len(c.arguments_json) // 4) for c in calls)
        )
        usage = Usage(
            input_tokens=input_tokens, output_tokens=output, reasoning_tokens=reasoning_tokens
        )
        if reply is not None:
            usage = reply.usage or usage
            finish = reply.finish_reason or finish
        return _Plan(
            reasoning=reasoning,
            text=text,
            tool_calls=calls,
            usage=usage,
            finish_reason=finish,
            fail_after=reply.fail_after if reply else None,
            error=_named(reply.error, self.name, request.model) if reply and reply.error else None,
        )

    async def _pace(self, tokens: int) -> None:
        if self.settings.time_to_first_token:
            await asyncio.sleep(self.settings.time_to_first_token)
        if self.settings.tokens_per_second and tokens:
            await asyncio.sleep(tokens / self.settings.tokens_per_second)

    def _signature(self, plan: _Plan) -> str:
        return hashlib.sha256(plan.reasoning.encode()).hexdigest()[:16]

    def _error(self, kind: str, model: str) -> errors.ProviderError:
        name, status = self.name, _STATUS.get(kind)
        text = f"simulated {kind.replace('_', ' ')}"
        if kind == "rate_limit":
            return errors.RateLimitError(
                text,
                provider=name,
                model=model,
                status=429,
                retry_after=self.settings.retry_after,
                headers=self._headers,
            )
        cls = _ERRORS[kind]
        return cls(
            text,
            provider=name,
            model=model,
            status=status,
            request_id=f"mock-req-{self._served}",
            headers=self._headers,
        )


_ERRORS: dict[str, type[errors.ProviderError]] = {
    "server": errors.ServerError,
    "overloaded": errors.OverloadedError,
    "timeout": errors.TimeoutError,
    "network": errors.NetworkError,
    "authentication": errors.AuthenticationError,
    "invalid_request": errors.InvalidRequestError,
    "context_window": errors.ContextWindowExceededError,
    "mid_stream": errors.ServerError,
}
_STATUS = {
    "rate_limit": 429,
    "server": 500,
    "overloaded": 529,
    "authentication": 401,
    "invalid_request": 400,
    "context_window": 400,
    "mid_stream": 500,
}


def _named(error: errors.ProviderError, provider: str, model: str) -> errors.ProviderError:
    error.provider = error.provider or provider
    error.model = error.model or model
    return error


def _pieces(text: str) -> list[str]:
    """Split text into word-sized pieces that join back exactly."""
    pieces: list[str] = []
    for i, word in enumerate(text.split(" ")):
        pieces.append(word if i == 0 else " " + word)
    return [p for p in pieces if p]


def _vector(seed: int, text: str, size: int) -> list[float]:
    digest = hashlib.sha256(f"{seed}\0{text}".encode()).digest()
    while len(digest) < size * 4:
        digest += hashlib.sha256(digest).digest()
    raw = struct.unpack(f"<{size}I", digest[: size * 4])
    return [round(v / 2**32 * 2 - 1, 6) for v in raw]
