"""The ``azure`` provider: Azure OpenAI's Chat Completions, Embeddings and Models,
through the v1 API or the dated deployment URLs.

The request bodies, answers, stream chunks and error bodies are OpenAI's, so they
are built and read by llmkernel-openai (``convert``, ``parse``, ``stream``,
``errors``); this module adds Azure's URLs, auth and content filter.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import attrs
import httpx

from llmkernel import errors, log
from llmkernel.http import aiter_sse, error_for_transport, make_client, read_json, send
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
from llmkernel_azure import errors as azure_errors
from llmkernel_azure.auth import Credentials
from llmkernel_azure.settings import AzureSettings
from llmkernel_openai import convert as openai_convert
from llmkernel_openai import errors as openai_errors
from llmkernel_openai import parse as openai_parse
from llmkernel_openai.models import capabilities_for
from llmkernel_openai.stream import ChunkParser

__all__ = ["AzureProvider"]

USER_AGENT = "llmkernel-azure/0.1.0"
_SNIPPET = 200


class AzureProvider(Provider):
    """One ``[providers.NAME]`` table with ``type = "azure"``."""

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        where = config.where or f"[providers.{config.name}]"
        self.settings = parse_options(AzureSettings, config.options, where=where)
        self.call_timeout = self.settings.timeout
        self.endpoint = self.settings.endpoint.rstrip("/")
        self._credentials = Credentials(provider=self.name, settings=self.settings)
        self._transport = config.transport
        self._client: httpx.AsyncClient | None = None
        version = self.settings.version
        self._params = {"api-version": version} if version else {}

    def __repr__(self) -> str:
        return f"<AzureProvider {self.name!r} endpoint={self.endpoint!r} api={self.settings.api!r}>"

    # ------------------------------------------------------------------ plumbing

    def deployment(self, model: str) -> str:
        """The deployment serving ``model`` (``deployments`` in config, else itself)."""
        return self.settings.deployments.get(model, model)

    def _path(self, model: str, operation: str) -> str:
        if self.settings.api == "v1":
            return f"/openai/v1/{operation}"
        return f"/openai/deployments/{quote(self.deployment(model), safe='')}/{operation}"

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = make_client(
                self.settings,
                base_url=self.endpoint,
                headers={"accept": "application/json", "user-agent": USER_AGENT},
                transport=self._transport,
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
        """Send and return the open response once its status is a success; an error
        status raises the kernel error for it. The caller closes it."""
        auth = await self._credentials.headers(model)
        client = self._http()
        headers = {**auth, **({"accept": accept} if accept else {})}
        request = client.build_request(
            method, path, json=body, params=self._params, headers=headers
        )
        log.debug("llmkernel.azure.request.sent", provider=self.name, model=model, path=path)
        return await send(
            client,
            request,
            provider=self.name,
            model=model,
            error_for=lambda response, _body: azure_errors.for_response(
                response, provider=self.name, model=model
            ),
        )

    async def _json(self, response: httpx.Response, *, model: str) -> Any:
        data = await read_json(
            response,
            provider=self.name,
            model=model,
            malformed=lambda snippet: openai_errors.malformed(
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
            info = openai_errors.error_info(data) or openai_errors.ErrorInfo(
                message="an error without details"
            )
            error = openai_errors.for_body_error(
                info, provider=self.name, model=model, response=response
            )
            error.headers = dict(response.headers)
            raise error

    def _malformed(
        self, exc: Exception, model: str, response: httpx.Response
    ) -> errors.MalformedResponseError:
        return openai_errors.malformed(str(exc), provider=self.name, model=model, response=response)

    def _timeout(self, model: str, what: str, seconds: float) -> errors.TimeoutError:
        return errors.TimeoutError(
            f"{what} within the {seconds:g}s timeout", provider=self.name, model=model
        )

    def _body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body = openai_convert.chat_body(
            request, stream=stream, send_reasoning=self.settings.send_reasoning, provider=self.name
        )
        body["model"] = self.deployment(request.model)
        return body

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
        model = request.model
        response = await self._send(
            "POST",
            self._path(model, "chat/completions"),
            model=model,
            body=self._body(request, stream=False),
        )
        data = await self._json(response, model=model)
        try:
            parsed = openai_parse.chat_response(data, request.response_format)
        except openai_parse.Malformed as exc:
            raise self._malformed(exc, model, response) from None
        refusal = parsed.refusal or azure_errors.filter_summary(data)
        return attrs.evolve(parsed, refusal=refusal, headers=dict(response.headers))

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Events as the chunks arrive; ``first_token_timeout`` bounds the wait for
        the first event and ``timeout`` the whole stream (the reads only)."""
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
        response = await self._send(
            "POST",
            self._path(model, "chat/completions"),
            model=model,
            body=self._body(request, stream=True),
            accept="text/event-stream",
        )
        try:
            headers = dict(response.headers)
            media_type = headers.get("content-type", "").split(";")[0].strip().lower()
            if media_type == "application/json":
                data = await self._json(response, model=model)
                try:
                    whole = openai_parse.chat_response(data, request.response_format)
                except openai_parse.Malformed as exc:
                    raise self._malformed(exc, model, response) from None
                for event in _replay(whole, headers, azure_errors.filter_summary(data)):
                    yield event
                return
            parser = ChunkParser()
            filtered: str | None = None
            body_start: list[str] = []
            done = saw_data = False
            yield MetadataEvent(headers=headers)

            async def text() -> AsyncGenerator[str, None]:
                async for piece in response.aiter_text():
                    if len("".join(body_start)) < _SNIPPET:
                        body_start.append(piece)
                    yield piece

            chunks = text()
            events = aiter_sse(chunks)
            try:
                async for sse in events:
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
                        raise openai_errors.malformed(
                            f"a stream event is not JSON: {payload[:_SNIPPET]!r}",
                            provider=self.name,
                            model=model,
                            response=response,
                        ) from None
                    self._raise_body_error(data, response, model=model)
                    filtered = filtered or azure_errors.filter_summary(data)
                    try:
                        found = parser.chunk(data)
                    except openai_parse.Malformed as exc:
                        raise self._malformed(exc, model, response) from None
                    for event in found:
                        yield event
            except httpx.RequestError as exc:
                raise error_for_transport(exc, provider=self.name, model=model) from exc
            finally:
                await events.aclose()  # type: ignore[attr-defined]
                await chunks.aclose()
            if not done:
                start = "".join(body_start).strip()
                if not saw_data and start:
                    raise openai_errors.malformed(
                        f"the body is not an event stream: {start[:_SNIPPET]!r}",
                        provider=self.name,
                        model=model,
                        response=response,
                    )
                raise errors.NetworkError(
                    "the stream was cut off before its end (no data: [DONE])",
                    provider=self.name,
                    model=model,
                    request_id=azure_errors.request_id(headers),
                )
            if filtered and not parser.refusal:
                yield MetadataEvent(refusal=filtered)
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
        model = request.model
        size = self.settings.embedding_batch_size
        inputs = list(request.inputs)
        vectors: list[list[float]] = []
        usage = Usage()
        answered = ""
        headers: dict[str, str] = {}
        for start in range(0, len(inputs), size):
            batch = inputs[start : start + size]
            body = openai_convert.embedding_body(request, batch)
            body["model"] = self.deployment(model)
            response = await self._send(
                "POST", self._path(model, "embeddings"), model=model, body=body
            )
            data = await self._json(response, model=model)
            headers = dict(response.headers)
            try:
                got, used, answered = openai_parse.embeddings(data, len(batch))
            except openai_parse.Malformed as exc:
                raise self._malformed(exc, model, response) from None
            vectors.extend(got)
            usage = usage + used
        return EmbeddingResponse(
            vectors=vectors,
            model=answered or model,
            provider=self.name,
            usage=usage,
            headers=headers,
        )

    # ------------------------------------------------------------------ models

    async def list_models(self) -> list[ModelInfo]:
        """``GET /openai/v1/models`` (v1) or ``GET /openai/models`` (dated API): the
        models the resource can deploy."""
        path = "/openai/v1/models" if self.settings.api == "v1" else "/openai/models"
        try:
            async with asyncio.timeout(self.settings.timeout):
                response = await self._send("GET", path, model="")
                data = await self._json(response, model="")
        except TimeoutError:
            raise self._timeout("", "no model list", self.settings.timeout) from None
        try:
            return openai_parse.model_list(data, self.name)
        except openai_parse.Malformed as exc:
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
        names = list(self.settings.models)
        names += [m for m in self.settings.deployments if m not in names]
        return names

    def capabilities(self, model: str) -> Capabilities | None:
        """OpenAI's known capabilities for ``model``, or for the deployment's name."""
        return capabilities_for(model) or capabilities_for(self.deployment(model))

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _replay(
    response: Response, headers: Mapping[str, str], filtered: str | None
) -> list[StreamEvent]:
    """A whole answer as stream events (a server that would not stream)."""
    events: list[StreamEvent] = [
        MetadataEvent(
            id=response.id,
            model=response.model or None,
            refusal=response.refusal or filtered,
            headers=headers,
        )
    ]
    if response.reasoning:
        events.append(ReasoningDelta(text=response.reasoning))
    if response.text:
        events.append(TextDelta(text=response.text))
    for index, call in enumerate(response.tool_calls):
        events.append(
            ToolCallDelta(index=index, id=call.id, name=call.name, arguments=call.arguments_json)
        )
    events.append(UsageEvent(usage=response.usage))
    events.append(FinishEvent(finish_reason=response.finish_reason))
    return events
