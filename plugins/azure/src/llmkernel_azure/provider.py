"""The ``azure`` provider: Azure OpenAI's Chat Completions, Embeddings and Models,
through the v1 API or the dated deployment URLs.

A subclass of llmkernel-openai's :class:`~llmkernel_openai.provider.OpenAIProvider`
(itself on :class:`llmkernel.http.HTTPProvider`: client and transport, timeouts,
response headers, secret redaction, health): the bodies, answers, stream chunks and
error bodies are OpenAI's. This module adds Azure's URLs (``path``, ``base_url``,
``query_params``), auth (``api-key``, or bearer tokens per request), deployment
names in the bodies, and the content filter (errors and refusals naming the
filtered categories).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Iterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from llmkernel import errors as kerrors
from llmkernel import log
from llmkernel.http import aiter_sse, headers_of, redact, request_id_from, scrub, snippet
from llmkernel.provider import ProviderConfig
from llmkernel.types import (
    Capabilities,
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    FinishEvent,
    MetadataEvent,
    ReasoningDelta,
    Response,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
    UsageEvent,
    replace,
)
from llmkernel_azure import errors as azure_errors
from llmkernel_azure.auth import Credentials
from llmkernel_azure.settings import AzureSettings
from llmkernel_openai import convert, parse
from llmkernel_openai import errors as wire
from llmkernel_openai.models import capabilities_for
from llmkernel_openai.provider import OpenAIProvider, Operation
from llmkernel_openai.stream import StreamParser

__all__ = ["AzureProvider"]

USER_AGENT = "llmkernel-azure/0.1.0"


class AzureProvider(OpenAIProvider):
    """One ``[providers.NAME]`` table with ``type = "azure"``."""

    settings_class = AzureSettings
    settings: AzureSettings

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self.endpoint = self.settings.endpoint.rstrip("/")
        self._credentials = Credentials(provider=self.name, settings=self.settings)

    def __repr__(self) -> str:
        return f"<AzureProvider {self.name!r} endpoint={self.endpoint!r} api={self.settings.api!r}>"

    # ------------------------------------------------------------------ hooks

    def base_url(self) -> str:
        return self.endpoint

    def default_headers(self) -> dict[str, str]:
        return {**super().default_headers(), "user-agent": USER_AGENT}

    def api_key(self, model: str = "") -> str | None:
        """The ``api_key_env`` key, or none when a bearer token authenticates."""
        if self.settings.token_auth:
            return None
        return self.settings.api_key(provider=self.name, model=model)

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"api-key": key}

    def query_params(self) -> Mapping[str, str]:
        version = self.settings.version
        return {"api-version": version} if version else {}

    def deployment(self, model: str) -> str:
        """The deployment serving ``model`` (``deployments`` in config, else itself)."""
        return self.settings.deployments.get(model, model)

    def path(self, operation: Operation, model: str) -> str:
        """``/openai/v1/...`` (v1), or ``/openai/deployments/{deployment}/...`` and
        ``/openai/models`` (the dated API)."""
        name = "chat/completions" if operation == "chat" else operation
        if self.settings.api == "v1":
            return f"/openai/v1/{name}"
        if operation == "models":
            return "/openai/models"
        return f"/openai/deployments/{quote(self.deployment(model), safe='')}/{name}"

    def chat_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body = super().chat_body(request, stream=stream)
        body["model"] = self.deployment(request.model)
        return body

    def error_for_response(
        self, response: httpx.Response, body: bytes, model: str
    ) -> kerrors.ProviderError:
        error = azure_errors.for_response(response, provider=self.name, model=model)
        log.debug(
            "llmkernel.azure.request.failed",
            provider=self.name,
            model=model,
            status=response.status_code,
            error=type(error).__name__,
        )
        return error

    def redact(self, text: str) -> str:
        return redact(super().redact(text), self._credentials.secrets)

    def scrub(self, error: kerrors.ProviderError) -> kerrors.ProviderError:
        """Removes the API key and the bearer tokens (current and recent)."""
        return scrub(super().scrub(error), self._credentials.secrets)

    async def send(
        self,
        method: str,
        path: str,
        *,
        model: str,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """The base's send, with the bearer token (fetched or refreshed first) when
        a token authenticates."""
        auth = await self._credentials.headers(model)
        if auth:
            headers = {**auth, **(headers or {})}
        log.debug("llmkernel.azure.request.sent", provider=self.name, model=model, path=path)
        return await super().send(
            method, path, model=model, json=json, params=params, headers=headers
        )

    # ------------------------------------------------------------------ chat

    def _check(self, data: Any, response: httpx.Response, model: str) -> None:
        """Raise the error an answer (or stream chunk) holds in an ``error`` object."""
        if isinstance(data, Mapping) and data.get("error"):
            info = wire.error_info(data) or wire.ErrorInfo(message="an error without details")
            error = self.error_for_body(info, response, model)
            error.headers = headers_of(response)
            raise error

    def _parse(self, data: Any, request: ChatRequest, response: httpx.Response) -> Response:
        """A whole answer, its refusal naming the content filter's categories."""
        self._check(data, response, request.model)
        try:
            parsed = parse.parse_response(data, request.response_format)
        except parse.Malformed as exc:
            raise self.malformed(str(exc), model=request.model, response=response) from None
        refusal = parsed.refusal or azure_errors.filter_summary(data)
        return replace(parsed, refusal=refusal, headers=headers_of(response))

    async def send_chat(self, request: ChatRequest) -> Response:
        model = request.model
        body = self.chat_body(request, stream=False)
        data, response = await self.send_json(
            "POST", self.path("chat", model), model=model, json=body
        )
        return self._parse(data, request, response)

    async def stream_events(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        """OpenAI's stream, read here rather than by the base class so that the
        chunks' ``content_filter_results`` can name the filtered categories."""
        model = request.model
        response = await self.send(
            "POST",
            self.path("chat", model),
            model=model,
            json=self.chat_body(request, stream=True),
            headers={"accept": "text/event-stream"},
        )
        try:
            yield self.opened(response)
            media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if media_type == "application/json":  # an error, or an answer that would not stream
                raw = await self.read_body(response, model)
                try:
                    data = json.loads(raw)
                except ValueError:
                    raise self.malformed(
                        f"the body is not JSON: {snippet(raw)!r}", model=model, response=response
                    ) from None
                for event in _replay(self._parse(data, request, response)):
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
        filtered: str | None = None
        body_start: list[str] = []
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
                self._check(data, response, model)
                filtered = filtered or azure_errors.filter_summary(data)
                try:
                    events = parser.feed(data)
                except parse.Malformed as exc:
                    raise self.malformed(str(exc), model=model, response=response) from None
                for event in events:
                    yield event
        except httpx.RequestError as exc:
            error = self.error_for_transport(exc, model)
            error.request_id = azure_errors.request_id(response.headers)
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
                request_id=azure_errors.request_id(response.headers)
                or request_id_from(response.headers),
            )
        if filtered and not parser.refusal:
            yield MetadataEvent(refusal=filtered)
        for event in parser.end():
            yield event

    # ------------------------------------------------------------------ embeddings

    async def send_embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """OpenAI's batching, with the deployment as the body's ``model``."""
        model = request.model
        size = self.settings.embedding_batch_size
        inputs = list(request.inputs)
        vectors: list[list[float]] = []
        usage = Usage()
        answered = ""
        headers: dict[str, str] = {}
        for start in range(0, len(inputs), size):
            batch = inputs[start : start + size]
            body = convert.embedding_body(request, batch)
            body["model"] = self.deployment(model)
            data, response = await self.send_json(
                "POST", self.path("embeddings", model), model=model, json=body
            )
            self._check(data, response, model)
            try:
                got, used, answered = parse.embeddings(data, len(batch))
            except parse.Malformed as exc:
                raise self.malformed(str(exc), model=model, response=response) from None
            vectors.extend(got)
            usage = usage + used
            headers = headers_of(response)
        return EmbeddingResponse(
            vectors=vectors,
            model=answered or model,
            provider=self.name,
            usage=usage,
            headers=headers,
        )

    # ------------------------------------------------------------------ models

    def declared_models(self) -> list[str]:
        names = list(self.settings.models)
        names += [m for m in self.settings.deployments if m not in names]
        return names

    def capabilities(self, model: str) -> Capabilities | None:
        """OpenAI's known capabilities for ``model``, or for the deployment's name."""
        return capabilities_for(model) or capabilities_for(self.deployment(model))


def _replay(response: Response) -> Iterator[StreamEvent]:
    """A whole answer as stream events (a server that would not stream)."""
    yield MetadataEvent(id=response.id, model=response.model or None, refusal=response.refusal)
    if response.reasoning:
        yield ReasoningDelta(text=response.reasoning)
    if response.text:
        yield TextDelta(text=response.text)
    for index, call in enumerate(response.tool_calls):
        yield ToolCallDelta(index=index, id=call.id, name=call.name, arguments=call.arguments_json)
    yield UsageEvent(usage=response.usage)
    yield FinishEvent(finish_reason=response.finish_reason)
