"""The ``openai`` provider: OpenAI's Chat Completions, Embeddings and Models APIs,
and every server that speaks them (Groq, Together, DeepSeek, OpenRouter, Mistral,
vLLM, LM Studio, llama.cpp...); with ``wire_api = "responses"``, chats go to OpenAI's
Responses API instead (:mod:`llmkernel_openai.responses`).

Built on :class:`llmkernel_http.HTTPProvider` (client, timeouts, headers, redaction).
A subclass for a server with other URLs or auth (Azure OpenAI) overrides the hooks:
:meth:`~OpenAIProvider.base_url`, :meth:`~OpenAIProvider.auth_headers`,
:meth:`~OpenAIProvider.query_params`, :meth:`~OpenAIProvider.path`,
:meth:`~OpenAIProvider.chat_body`, :meth:`~OpenAIProvider.error_for_response`
and :meth:`~OpenAIProvider.error_for_body`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Iterator, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from llmkernel import errors as kerrors
from llmkernel import log
from llmkernel.provider import ProviderConfig
from llmkernel.types import (
    Capabilities,
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    FinishEvent,
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
from llmkernel_http import HTTPProvider, aiter_sse, headers_of, request_id_from, snippet
from llmkernel_openai import convert, parse, responses
from llmkernel_openai import errors as wire
from llmkernel_openai.models import KNOWN_MODELS, capabilities_for
from llmkernel_openai.settings import OpenAISettings
from llmkernel_openai.stream import StreamParser

#: The operations whose URL path :meth:`OpenAIProvider.path` gives.
Operation = Literal["chat", "responses", "embeddings", "models"]
_PATHS: dict[str, str] = {
    "chat": "/chat/completions",
    "responses": responses.PATH,
    "embeddings": "/embeddings",
    "models": "/models",
}


class OpenAIProvider(HTTPProvider):
    """One ``[providers.NAME]`` instance with ``type = "openai"``."""

    settings_class = OpenAISettings
    settings: OpenAISettings

    def load_settings(self, config: ProviderConfig) -> OpenAISettings:
        settings: OpenAISettings = super().load_settings(config)
        return settings.resolved()

    @property
    def price_preset(self) -> str | None:
        """The preset whose price table prices this instance (the prices plugin
        asks), ``None`` for a custom server: see :meth:`OpenAISettings.price_preset`."""
        return self.settings.price_preset()

    # ------------------------------------------------------------------ hooks

    def base_url(self) -> str:
        return self.settings.base_url

    def api_key(self, model: str = "") -> str | None:
        settings = self.settings
        return settings.api_key(
            provider=self.name, model=model, required=settings.api_key_required is not False
        )

    def auth_headers(self, key: str) -> dict[str, str]:
        settings = self.settings
        headers = (
            {settings.api_key_header: key}
            if settings.api_key_header
            else {"authorization": f"Bearer {key}"}
        )
        if settings.organization:
            headers["openai-organization"] = settings.organization
        if settings.project:
            headers["openai-project"] = settings.project
        return headers

    def query_params(self) -> Mapping[str, str]:
        version = self.settings.api_version
        return {"api-version": version} if version else {}

    def path(self, operation: Operation, model: str) -> str:
        """The URL path (under :meth:`base_url`) of ``operation`` for ``model``."""
        return _PATHS[operation]

    def chat_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """The JSON body of a chat completion request."""
        return convert.chat_body(
            request,
            stream=stream,
            send_reasoning=self.settings.send_reasoning,
            provider=self.name,
            max_tokens_field=self.settings.max_tokens_field,
        )

    def error_for_response(
        self, response: httpx.Response, body: bytes, model: str
    ) -> kerrors.ProviderError:
        error = wire.error_for_response(response, provider=self.name, model=model)
        log.debug(
            "llmkernel.openai.request.failed",
            provider=self.name,
            model=model,
            status=response.status_code,
            error=type(error).__name__,
        )
        return error

    def error_for_body(
        self, info: wire.ErrorInfo, response: httpx.Response, model: str
    ) -> kerrors.ProviderError:
        """The error for an ``error`` object inside a 200 answer or stream."""
        return wire.for_body_error(info, provider=self.name, model=model, response=response)

    def malformed(
        self, what: str, *, model: str, response: httpx.Response | None = None
    ) -> kerrors.MalformedResponseError:
        return wire.malformed(what, provider=self.name, model=model, response=response)

    # ------------------------------------------------------------------ reading

    async def _json(
        self, method: str, path: str, *, model: str, body: Any = None
    ) -> tuple[Any, httpx.Response]:
        """Send, read and decode; an ``error`` object in the answer raises it."""
        log.debug("llmkernel.openai.request.sent", provider=self.name, model=model, path=path)
        data, response = await self.send_json(method, path, model=model, json=body)
        self._raise_body_error(data, response, model=model)
        return data, response

    def _raise_body_error(self, data: Any, response: httpx.Response, *, model: str) -> None:
        if isinstance(data, Mapping) and data.get("error"):
            info = wire.error_info(data) or wire.ErrorInfo(message="an error without details")
            error = self.error_for_body(info, response, model)
            error.headers = headers_of(response)
            raise error

    # ------------------------------------------------------------------ chat

    def parse_answer(self, data: Any, request: ChatRequest, response: httpx.Response) -> Response:
        """A whole chat answer, decoded and checked for an ``error`` object."""
        try:
            answer = parse.parse_response(data, request.response_format)
        except parse.Malformed as exc:
            raise self.malformed(str(exc), model=request.model, response=response) from None
        return self.with_headers(answer, response)

    def stream_refusal(self, data: Any) -> str | None:
        """A refusal a stream chunk carries outside ``delta.refusal`` (none here;
        Azure's content filter annotates chunks)."""
        return None

    def request_id(self, headers: httpx.Headers) -> str | None:
        """The request id a failure reports, from the response headers."""
        return request_id_from(headers)

    def embedding_body(self, request: EmbeddingRequest, batch: list[str]) -> dict[str, Any]:
        """The JSON body of one embeddings request (a batch of the inputs)."""
        return convert.embedding_body(request, batch)

    async def send_chat(self, request: ChatRequest) -> Response:
        if self.settings.wire_api == "responses":
            return await self._send_responses(request)
        model = request.model
        body = self.chat_body(request, stream=False)
        # send_json awaited here, not through _json: one frame less on every chat
        data, response = await self.send_json(
            "POST", self.path("chat", model), model=model, json=body
        )
        self._raise_body_error(data, response, model=model)
        return self.parse_answer(data, request, response)

    async def stream_events(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        if self.settings.wire_api == "responses":
            async for event in self._stream_responses(request):
                yield event
            return
        model = request.model
        body = self.chat_body(request, stream=True)
        log.debug("llmkernel.openai.request.sent", provider=self.name, model=model, path="chat")
        response = await self.send(
            "POST",
            self.path("chat", model),
            model=model,
            json=body,
            headers={"accept": "text/event-stream"},
        )
        try:
            yield self.opened(response)
            media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if media_type == "application/json":
                # The server answered whole (an error, or it ignored "stream": true).
                raw = await self.read_body(response, model)
                try:
                    data = json.loads(raw)
                except ValueError:
                    raise self.malformed(
                        f"the body is not JSON: {snippet(raw)!r}", model=model, response=response
                    ) from None
                self._raise_body_error(data, response, model=model)
                for event in _replay(self.parse_answer(data, request, response)):
                    yield event
                return
            async for event in self._read_stream(response, model):
                yield event
        finally:
            await response.aclose()

    async def _read_stream(
        self, response: httpx.Response, model: str
    ) -> AsyncGenerator[StreamEvent, None]:
        parser = StreamParser()
        body_start: list[str] = []
        filtered: str | None = None
        done = saw_data = False

        async def text() -> AsyncGenerator[str, None]:
            kept = 0
            async for piece in response.aiter_text():
                if kept < 200:
                    body_start.append(piece)
                    kept += len(piece)
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
                    raise self.malformed(
                        f"a stream event is not JSON: {snippet(payload)!r}",
                        model=model,
                        response=response,
                    ) from None
                if sse.event == "error" and not (isinstance(data, Mapping) and data.get("error")):
                    data = {"error": data}
                self._raise_body_error(data, response, model=model)
                filtered = filtered or self.stream_refusal(data)
                try:
                    events = parser.feed(data)
                except parse.Malformed as exc:
                    raise self.malformed(str(exc), model=model, response=response) from None
                for event in events:
                    yield event
        except httpx.RequestError as exc:
            error = self.error_for_transport(exc, model)
            error.request_id = self.request_id(response.headers)
            raise error from exc
        finally:
            await sse_events.aclose()  # type: ignore[attr-defined]
            await chunks.aclose()
        if not done:
            start = snippet("".join(body_start))
            if not saw_data and start:
                raise self.malformed(
                    f"the body is not an event stream: {start!r}", model=model, response=response
                )
            raise kerrors.NetworkError(
                "the stream was cut off before its end (no data: [DONE])",
                provider=self.name,
                model=model,
                request_id=self.request_id(response.headers),
            )
        if filtered and not parser.refusal:
            yield MetadataEvent(refusal=filtered)
        for event in parser.end():
            yield event

    # ------------------------------------------------------------------ Responses API

    def _responses_error(
        self, failed: tuple[str, str], response: httpx.Response, model: str
    ) -> Exception:
        code, message = failed
        return self.error_for_body(wire.ErrorInfo(message=message, code=code), response, model)

    async def _send_responses(self, request: ChatRequest) -> Response:
        body = responses.request_body(request, stream=False, provider=self.name)
        data, response = await self._json(
            "POST", self.path("responses", request.model), model=request.model, body=body
        )
        failed = responses.failure_of(data) if isinstance(data, Mapping) else None
        if failed is not None:
            raise self._responses_error(failed, response, request.model)
        try:
            answer = responses.parse_response(data, request)
        except parse.Malformed as exc:
            raise self.malformed(str(exc), model=request.model, response=response) from None
        return self.with_headers(answer, response)

    async def _stream_responses(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        model = request.model
        body = responses.request_body(request, stream=True, provider=self.name)
        log.debug(
            "llmkernel.openai.request.sent", provider=self.name, model=model, path="responses"
        )
        response = await self.send(
            "POST",
            self.path("responses", model),
            model=model,
            json=body,
            headers={"accept": "text/event-stream"},
        )
        parser = responses.StreamParser()
        events = aiter_sse(response.aiter_text())
        try:
            yield self.opened(response)
            async for sse in events:
                payload = sse.data.strip()
                if not payload or payload == "[DONE]":
                    continue
                try:
                    data = json.loads(payload)
                except ValueError:
                    raise self.malformed(
                        f"a stream event is not JSON: {snippet(payload)!r}",
                        model=model,
                        response=response,
                    ) from None
                if not isinstance(data, Mapping):
                    raise self.malformed(
                        "a stream event is not an object", model=model, response=response
                    )
                failed = parser.failure(data)
                if failed is not None:
                    raise self._responses_error(failed, response, model)
                for event in parser.feed(data):
                    yield event
        except httpx.RequestError as exc:
            error = self.error_for_transport(exc, model)
            error.request_id = self.request_id(response.headers)
            raise error from exc
        finally:
            await events.aclose()  # type: ignore[attr-defined]
            await response.aclose()
        if not parser.done:
            raise kerrors.NetworkError(
                "the stream was cut off before its end (no response.completed)",
                provider=self.name,
                model=model,
                request_id=self.request_id(response.headers),
            )

    # ------------------------------------------------------------------ embeddings

    async def send_embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        size = self.settings.embedding_batch_size
        inputs = list(request.inputs)
        vectors: list[list[float]] = []
        usage = Usage()
        model = ""
        headers: dict[str, str] = {}
        for start in range(0, len(inputs), size):
            batch = inputs[start : start + size]
            data, response = await self._json(
                "POST",
                self.path("embeddings", request.model),
                model=request.model,
                body=self.embedding_body(request, batch),
            )
            try:
                got, used, model = parse.embeddings(data, len(batch))
            except parse.Malformed as exc:
                raise self.malformed(str(exc), model=request.model, response=response) from None
            vectors.extend(got)
            usage = usage + used
            headers = headers_of(response)
        return EmbeddingResponse(
            vectors=vectors,
            model=model or request.model,
            provider=self.name,
            usage=usage,
            headers=headers,
        )

    # ------------------------------------------------------------------ models

    async def fetch_models(self) -> list[ModelInfo]:
        data, response = await self._json("GET", self.path("models", ""), model="")
        try:
            return parse.model_list(data, self.name)
        except parse.Malformed as exc:
            raise self.malformed(str(exc), model="", response=response) from None

    def declared_models(self) -> list[str]:
        """The configured ``models``, plus the well-known OpenAI models when this
        instance talks to OpenAI itself."""
        names = list(self.settings.models)
        if urlsplit(self.settings.base_url).hostname == "api.openai.com":
            names += [m for m in KNOWN_MODELS if m not in names]
        return names

    def capabilities(self, model: str) -> Capabilities | None:
        return capabilities_for(model)


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
