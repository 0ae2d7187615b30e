"""The Gemini provider: chat, streaming, embeddings and model listing over the
Gemini API (``generativelanguage.googleapis.com``) with httpx, no SDK."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import attrs
import httpx

from llmkernel import errors
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
    Health,
    ModelInfo,
    Response,
    StreamEvent,
    Usage,
)
from llmkernel_gemini.convert import batch_body, chat_body, embed_request, model_path
from llmkernel_gemini.errors import error_for_response, error_from_object, error_object
from llmkernel_gemini.models import KNOWN_MODELS, bare_model_id, capabilities_for
from llmkernel_gemini.parse import Where, as_mapping, optional_list, parse_response
from llmkernel_gemini.settings import GeminiSettings
from llmkernel_gemini.stream import StreamParser

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence

_MAX_MODEL_PAGES = 50
_HEALTH_TIMEOUT = 30.0


class GeminiProvider(Provider):
    """One ``[providers.NAME]`` section with ``type = "gemini"``."""

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self.settings = parse_options(GeminiSettings, config.options, where=config.where)
        self.call_timeout = self.settings.timeout
        self._transport = config.transport
        self._client: httpx.AsyncClient | None = None

    # ------------------------------------------------------------------ plumbing

    def _http(self) -> httpx.AsyncClient:
        """The pooled client, built on first use (when the key is read)."""
        if self._client is None:
            headers = {"accept": "application/json"}
            key = self.settings.api_key(provider=self.name)
            if key:
                headers["x-goog-api-key"] = key
            self._client = make_client(
                self.settings,
                base_url=self.settings.api_root,
                headers=headers,
                transport=self._transport,
            )
        return self._client

    async def _send(
        self,
        method: str,
        path: str,
        *,
        model: str,
        body: Any = None,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a request and return the (streaming) response; raise the kernel error
        for an error status or a transport failure."""
        client = self._http()
        request = client.build_request(method, path, json=body, params=params, headers=headers)
        return await send(
            client,
            request,
            provider=self.name,
            model=model,
            error_for=lambda response, raw: error_for_response(
                response.status_code, raw, response.headers, provider=self.name, model=model
            ),
        )

    async def _json(
        self,
        method: str,
        path: str,
        *,
        model: str,
        body: Any = None,
        params: Mapping[str, str | int] | None = None,
    ) -> tuple[Any, Where]:
        response = await self._send(method, path, model=model, body=body, params=params)
        where = Where(self.name, model, request_id_from(response.headers))
        data = await read_json(
            response,
            provider=self.name,
            model=model,
            malformed=lambda snippet: where.malformed(f"a body that is not JSON: {snippet!r}"),
        )
        return data, where

    def _timed_out(self, model: str, what: str) -> errors.TimeoutError:
        return errors.TimeoutError(
            f"no complete answer within {what}", provider=self.name, model=model
        )

    # ------------------------------------------------------------------ chat

    async def chat(self, request: ChatRequest) -> Response:
        body = chat_body(request, schema_format=self.settings.schema_format)
        path = f"/{model_path(request.model)}:generateContent"
        try:
            async with asyncio.timeout(self.settings.timeout):
                data, where = await self._json("POST", path, model=request.model, body=body)
        except TimeoutError:
            raise self._timed_out(request.model, f"timeout={self.settings.timeout}s") from None
        response = parse_response(data, where)
        fmt = request.response_format
        if fmt is not None and fmt.type != "text" and response.text:
            try:
                parsed = json.loads(response.text)
            except ValueError:
                parsed = None
            response = attrs.evolve(response, parsed=parsed)
        return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        body = chat_body(request, schema_format=self.settings.schema_format)
        path = f"/{model_path(request.model)}:streamGenerateContent"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.timeout
        first_wait = self.settings.first_token_timeout
        events = self._stream_events(request.model, path, body)
        first = True
        try:
            while True:
                limit, what = deadline, f"timeout={self.settings.timeout}s"
                if first and first_wait is not None and loop.time() + first_wait < deadline:
                    limit, what = loop.time() + first_wait, f"first_token_timeout={first_wait}s"
                try:
                    async with asyncio.timeout_at(limit):
                        event = await anext(events)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise self._timed_out(request.model, what) from None
                first = False
                yield event
        finally:
            await events.aclose()

    async def _stream_events(
        self, model: str, path: str, body: Any
    ) -> AsyncGenerator[StreamEvent, None]:
        response = await self._send(
            "POST",
            path,
            model=model,
            body=body,
            params={"alt": "sse"},
            headers={"accept": "text/event-stream"},
        )
        where = Where(self.name, model, request_id_from(response.headers))
        parser = StreamParser(where)
        try:
            content_type = response.headers.get("content-type", "").lower()
            if content_type and "event-stream" not in content_type:
                raw = await response.aread()
                raise _not_a_stream(raw, content_type, where)
            async for event in aiter_sse(response.aiter_text()):
                if not event.data.strip():
                    continue
                for item in parser.feed(event.data):
                    yield item
            for item in parser.end():
                yield item
        except httpx.TransportError as exc:
            raise error_for_transport(exc, provider=self.name, model=model) from exc
        finally:
            await response.aclose()

    # ------------------------------------------------------------------ embeddings

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        name = model_path(request.model)
        inputs = list(request.inputs)
        vectors: list[list[float]] = []
        try:
            async with asyncio.timeout(self.settings.timeout):
                if len(inputs) == 1:
                    data, where = await self._json(
                        "POST",
                        f"/{name}:embedContent",
                        model=request.model,
                        body=embed_request(request.model, inputs[0], request),
                    )
                    body = as_mapping(data, "an embedContent body", where)
                    vectors.append(_vector(body.get("embedding"), "embedding", where))
                else:
                    size = self.settings.embedding_batch_size
                    for start in range(0, len(inputs), size):
                        batch = inputs[start : start + size]
                        vectors.extend(await self._embed_batch(request, name, batch))
        except TimeoutError:
            raise self._timed_out(request.model, f"timeout={self.settings.timeout}s") from None
        # Gemini reports no token usage for embeddings
        return EmbeddingResponse(vectors=vectors, model=bare_model_id(request.model), usage=Usage())

    async def _embed_batch(
        self, request: EmbeddingRequest, name: str, batch: Sequence[str]
    ) -> list[list[float]]:
        data, where = await self._json(
            "POST",
            f"/{name}:batchEmbedContents",
            model=request.model,
            body=batch_body(request.model, batch, request),
        )
        body = as_mapping(data, "a batchEmbedContents body", where)
        embeddings = optional_list(body, "embeddings", "batchEmbedContents", where)
        if len(embeddings) != len(batch):
            raise where.malformed(
                f"{len(embeddings)} embeddings for {len(batch)} texts in batchEmbedContents"
            )
        return [_vector(e, f"embeddings[{i}]", where) for i, e in enumerate(embeddings)]

    # ------------------------------------------------------------------ models

    async def list_models(self) -> list[ModelInfo]:
        models: list[ModelInfo] = []
        token: str | None = None
        try:
            async with asyncio.timeout(self.settings.timeout):
                for _ in range(_MAX_MODEL_PAGES):
                    params: dict[str, str | int] = {"pageSize": 1000}
                    if token:
                        params["pageToken"] = token
                    data, where = await self._json("GET", "/models", model="", params=params)
                    body = as_mapping(data, "a model list", where)
                    for i, item in enumerate(optional_list(body, "models", "model list", where)):
                        models.append(self._model_info(as_mapping(item, f"models[{i}]", where)))
                    next_token = body.get("nextPageToken")
                    if not isinstance(next_token, str) or not next_token or next_token == token:
                        break
                    token = next_token
        except TimeoutError:
            raise self._timed_out("", f"timeout={self.settings.timeout}s") from None
        return models

    def _model_info(self, item: Mapping[str, Any]) -> ModelInfo:
        name = item.get("name")
        model_id = bare_model_id(name) if isinstance(name, str) else ""
        known = capabilities_for(model_id)
        methods = item.get("supportedGenerationMethods")
        methods = methods if isinstance(methods, list) else []
        window, output = item.get("inputTokenLimit"), item.get("outputTokenLimit")
        if known is None and methods:
            chat = "generateContent" in methods
            known = Capabilities(
                tools=chat,
                images=False,
                json_schema=chat,
                reasoning=item.get("thinking") is True,
                embeddings=any(m in methods for m in ("embedContent", "batchEmbedContents")),
                context_window=window if isinstance(window, int) else None,
                max_output_tokens=output if isinstance(output, int) and chat else None,
            )
        return ModelInfo(id=model_id, provider=self.name, capabilities=known, owned_by="google")

    async def health(self) -> Health:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(min(self.settings.timeout, _HEALTH_TIMEOUT)):
                data, where = await self._json("GET", "/models", model="", params={"pageSize": 1})
            as_mapping(data, "a model list", where)
        except TimeoutError:
            return Health(
                ok=False,
                latency=time.perf_counter() - started,
                detail="no answer from the model list in time",
            )
        except Exception as exc:  # a health check reports, never raises
            return Health(
                ok=False,
                latency=time.perf_counter() - started,
                detail=f"{type(exc).__name__}: {exc}",
            )
        return Health(ok=True, latency=time.perf_counter() - started, detail="model list answered")

    def capabilities(self, model: str) -> Capabilities | None:
        return capabilities_for(model)

    def declared_models(self) -> list[str]:
        return list(dict.fromkeys([*self.settings.models, *KNOWN_MODELS]))

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _vector(value: Any, what: str, where: Where) -> list[float]:
    embedding = as_mapping(value, what, where)
    values = embedding.get("values")
    if not isinstance(values, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        raise where.malformed(f"{what}.values that is not a list of numbers")
    return [float(v) for v in values]


def _not_a_stream(raw: bytes, content_type: str, where: Where) -> errors.ProviderError:
    text = raw.decode("utf-8", errors="replace")
    try:
        error = error_object(json.loads(text))
    except ValueError:
        error = None
    if error is not None:
        return error_from_object(
            error,
            status=None,
            provider=where.provider,
            model=where.model,
            request_id=where.request_id,
        )
    snippet = " ".join(text.split())[:200]
    return where.malformed(f"a {content_type} body instead of an event stream: {snippet!r}")
