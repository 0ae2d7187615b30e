"""The ``openai`` provider: OpenAI's Chat Completions, Embeddings and Models APIs,
and every server that speaks them (Groq, Together, DeepSeek, OpenRouter, Mistral,
vLLM, LM Studio, llama.cpp...)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from llmkernel import errors as kerrors
from llmkernel import log
from llmkernel.http import (
    aiter_sse,
    error_for_transport,
    make_client,
    read_json,
    request_id_from,
    send,
)
from llmkernel.options import parse_options
from llmkernel.provider import Provider, ProviderConfig
from llmkernel.types import (
    Capabilities,
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    FinishEvent,
    Health,
    MetadataEvent,
    ModelInfo,
    ReasoningDelta,
    Response,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
    UsageEvent,
)
from llmkernel_openai import convert, parse
from llmkernel_openai import errors as wire
from llmkernel_openai.models import KNOWN_MODELS, capabilities_for
from llmkernel_openai.settings import OpenAISettings
from llmkernel_openai.stream import ChunkParser

_SNIPPET = 200


class OpenAIProvider(Provider):
    """One ``[providers.NAME]`` instance with ``type = "openai"``."""

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        where = config.where or f"[providers.{config.name}]"
        self.settings: OpenAISettings = parse_options(
            OpenAISettings, config.options, where=where
        ).resolved()
        self.call_timeout = self.settings.timeout
        self._transport = config.transport
        self._client: httpx.AsyncClient | None = None
        self._params = (
            {"api-version": self.settings.api_version} if self.settings.api_version else {}
        )

    # ------------------------------------------------------------------ plumbing

    def _http(self) -> httpx.AsyncClient:
        """The pooled client, built at the first request (when the key is read)."""
        if self._client is None:
            settings = self.settings
            key = settings.api_key(
                provider=self.name, required=settings.api_key_required is not False
            )
            headers: dict[str, str] = {"Accept": "application/json"}
            if key and settings.api_key_header:
                headers[settings.api_key_header] = key
            elif key:
                headers["Authorization"] = f"Bearer {key}"
            if settings.organization:
                headers["OpenAI-Organization"] = settings.organization
            if settings.project:
                headers["OpenAI-Project"] = settings.project
            self._client = make_client(
                settings, base_url=settings.base_url, headers=headers, transport=self._transport
            )
        return self._client

    async def _send(
        self,
        method: str,
        path: str,
        *,
        model: str,
        body: Mapping[str, Any] | None = None,
        accept: str | None = None,
    ) -> httpx.Response:
        """Send a request and return the open response once its status is a success;
        an error status raises the kernel error for it. The caller closes it."""
        client = self._http()
        headers = {"Accept": accept} if accept else None
        request = client.build_request(
            method, path, json=body, params=self._params, headers=headers
        )
        log.debug("llmkernel.openai.request.sent", provider=self.name, model=model, path=path)
        return await send(
            client,
            request,
            provider=self.name,
            model=model,
            error_for=lambda response, _body: self._failed(response, model),
        )

    def _failed(self, response: httpx.Response, model: str) -> kerrors.ProviderError:
        """The error for an error ``response`` (its body read), logged."""
        error = wire.for_response(response, provider=self.name, model=model)
        log.debug(
            "llmkernel.openai.request.failed",
            provider=self.name,
            model=model,
            status=response.status_code,
            error=type(error).__name__,
        )
        return error

    async def _json(self, response: httpx.Response, *, model: str) -> Any:
        """Read and decode a success response's JSON body; an ``error`` object in it
        raises that error."""
        data = await read_json(
            response,
            provider=self.name,
            model=model,
            malformed=lambda snippet: wire.malformed(
                f"the body is not JSON: {snippet!r}",
                provider=self.name,
                model=model,
                response=response,
            ),
        )
        self._raise_body_error(data, response, model=model)
        return data

    def _raise_body_error(self, data: Any, response: httpx.Response, *, model: str) -> None:
        if isinstance(data, Mapping) and data.get("error"):
            info = wire.error_info(data) or wire.ErrorInfo(message="an error without details")
            raise wire.for_body_error(info, provider=self.name, model=model, response=response)

    def _malformed(
        self, exc: parse.Malformed, model: str, response: httpx.Response
    ) -> kerrors.MalformedResponseError:
        return wire.malformed(str(exc), provider=self.name, model=model, response=response)

    def _timeout(self, model: str, what: str, seconds: float) -> kerrors.TimeoutError:
        return kerrors.TimeoutError(
            f"{what} within the {seconds:g}s timeout", provider=self.name, model=model
        )

    # ------------------------------------------------------------------ chat

    async def chat(self, request: ChatRequest) -> Response:
        try:
            async with asyncio.timeout(self.settings.timeout):
                return await self._chat(request)
        except TimeoutError:
            raise self._timeout(
                request.model, "no complete answer", self.settings.timeout
            ) from None

    async def _chat(self, request: ChatRequest) -> Response:
        body = convert.chat_body(
            request, stream=False, send_reasoning=self.settings.send_reasoning, provider=self.name
        )
        response = await self._send("POST", "/chat/completions", model=request.model, body=body)
        data = await self._json(response, model=request.model)
        try:
            return parse.chat_response(data, request.response_format)
        except parse.Malformed as exc:
            raise self._malformed(exc, request.model, response) from None

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Events as the chunks arrive; ``first_token_timeout`` bounds the wait for the
        first event and ``timeout`` the whole stream (each applied to the reads only,
        never to the time the consumer spends between events)."""
        settings = self.settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.timeout
        first_deadline = deadline
        if settings.first_token_timeout is not None:
            first_deadline = min(deadline, loop.time() + settings.first_token_timeout)
        inner = self._stream(request)
        first = True
        try:
            while True:
                try:
                    async with asyncio.timeout_at(first_deadline if first else deadline):
                        event = await anext(inner)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    if first and first_deadline < deadline:
                        raise self._timeout(
                            request.model, "no first event", settings.first_token_timeout or 0.0
                        ) from None
                    raise self._timeout(
                        request.model, "the stream did not finish", settings.timeout
                    ) from None
                first = False
                yield event
        finally:
            await inner.aclose()

    async def _stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        model = request.model
        body = convert.chat_body(
            request, stream=True, send_reasoning=self.settings.send_reasoning, provider=self.name
        )
        response = await self._send(
            "POST", "/chat/completions", model=model, body=body, accept="text/event-stream"
        )
        try:
            media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if media_type == "application/json":
                # The server answered whole (an error, or it ignored "stream": true).
                data = await self._json(response, model=model)
                try:
                    whole = parse.chat_response(data, request.response_format)
                except parse.Malformed as exc:
                    raise self._malformed(exc, model, response) from None
                for event in _replay(whole):
                    yield event
                return
            parser = ChunkParser()
            body_start: list[str] = []
            done = saw_data = False

            async def text() -> AsyncGenerator[str, None]:
                async for piece in response.aiter_text():
                    if len("".join(body_start)) < _SNIPPET:
                        body_start.append(piece)
                    yield piece

            chunks = text()
            sse_events = aiter_sse(chunks)
            try:
                async for sse in sse_events:
                    payload = sse.data.strip()
                    if not payload:
                        continue
                    saw_data = True
                    if payload == "[DONE]":
                        done = True
                        break
                    try:
                        data = json.loads(payload)
                    except ValueError:
                        raise wire.malformed(
                            f"a stream event is not JSON: {payload[:_SNIPPET]!r}",
                            provider=self.name,
                            model=model,
                            response=response,
                        ) from None
                    if sse.event == "error" and not (
                        isinstance(data, Mapping) and data.get("error")
                    ):
                        data = {"error": data}
                    self._raise_body_error(data, response, model=model)
                    try:
                        events = parser.chunk(data)
                    except parse.Malformed as exc:
                        raise self._malformed(exc, model, response) from None
                    for event in events:
                        yield event
            except httpx.RequestError as exc:
                raise error_for_transport(exc, provider=self.name, model=model) from exc
            finally:
                await _aclose(sse_events)
                await chunks.aclose()
            if not done:
                start = "".join(body_start).strip()
                if not saw_data and start:
                    raise wire.malformed(
                        f"the body is not an event stream: {start[:_SNIPPET]!r}",
                        provider=self.name,
                        model=model,
                        response=response,
                    )
                raise kerrors.NetworkError(
                    "the stream was cut off before its end (no data: [DONE])",
                    provider=self.name,
                    model=model,
                    request_id=request_id_from(response.headers),
                )
            for event in parser.end():
                yield event
        finally:
            await response.aclose()

    # ------------------------------------------------------------------ embeddings

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        try:
            async with asyncio.timeout(self.settings.timeout):
                return await self._embed(request)
        except TimeoutError:
            raise self._timeout(request.model, "no embeddings", self.settings.timeout) from None

    async def _embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        size = self.settings.embedding_batch_size
        inputs = list(request.inputs)
        vectors: list[list[float]] = []
        usage = Usage()
        model = ""
        for start in range(0, len(inputs), size):
            batch = inputs[start : start + size]
            response = await self._send(
                "POST",
                "/embeddings",
                model=request.model,
                body=convert.embedding_body(request, batch),
            )
            data = await self._json(response, model=request.model)
            try:
                got, used, model = parse.embeddings(data, len(batch))
            except parse.Malformed as exc:
                raise self._malformed(exc, request.model, response) from None
            vectors.extend(got)
            usage = usage + used
        return EmbeddingResponse(
            vectors=vectors, model=model or request.model, provider=self.name, usage=usage
        )

    # ------------------------------------------------------------------ models

    async def list_models(self) -> list[ModelInfo]:
        try:
            async with asyncio.timeout(self.settings.timeout):
                response = await self._send("GET", "/models", model="")
                data = await self._json(response, model="")
        except TimeoutError:
            raise self._timeout("", "no model list", self.settings.timeout) from None
        try:
            return parse.model_list(data, self.name)
        except parse.Malformed as exc:
            raise self._malformed(exc, "", response) from None

    async def health(self) -> Health:
        started = time.perf_counter()
        try:
            models = await self.list_models()
        except Exception as exc:  # a health check reports, never raises
            return Health(
                ok=False,
                latency=time.perf_counter() - started,
                detail=f"{type(exc).__name__}: {exc}",
            )
        return Health(
            ok=True, latency=time.perf_counter() - started, detail=f"{len(models)} models listed"
        )

    def declared_models(self) -> list[str]:
        """The configured ``models``, plus the well-known OpenAI models when this
        instance talks to OpenAI itself."""
        names = list(self.settings.models)
        if urlsplit(self.settings.base_url).hostname == "api.openai.com":
            names += [m for m in KNOWN_MODELS if m not in names]
        return names

    def capabilities(self, model: str) -> Capabilities | None:
        return capabilities_for(model)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


def _replay(response: Response) -> Iterator[StreamEvent]:
    """A whole answer as stream events (for a server that would not stream)."""
    yield MetadataEvent(id=response.id, model=response.model or None, refusal=response.refusal)
    if response.reasoning:
        yield ReasoningDelta(text=response.reasoning)
    if response.text:
        yield TextDelta(text=response.text)
    for index, call in enumerate(response.tool_calls):
        yield ToolCallDelta(index=index, id=call.id, name=call.name, arguments=call.arguments_json)
    yield UsageEvent(usage=response.usage)
    yield FinishEvent(finish_reason=response.finish_reason)
