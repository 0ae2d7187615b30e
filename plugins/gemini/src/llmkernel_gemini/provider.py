"""The Gemini provider: chat, streaming, embeddings, token counting and model
listing over the Gemini API (``generativelanguage.googleapis.com``) with httpx, no
SDK.

Built on :class:`llmkernel_http.HTTPProvider` (client, timeouts, headers,
redaction); this module holds what Gemini's API makes different."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import attrs
import httpx

from llmkernel import errors
from llmkernel.types import (
    Capabilities,
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelInfo,
    Response,
    StreamEvent,
    TokenCount,
    Usage,
)
from llmkernel_gemini.convert import batch_body, chat_body, embed_request, model_path
from llmkernel_gemini.errors import error_for_response, error_from_object, error_object
from llmkernel_gemini.models import KNOWN_MODELS, bare_model_id, capabilities_for
from llmkernel_gemini.parse import Where, as_mapping, optional_list, parse_response
from llmkernel_gemini.settings import GeminiSettings
from llmkernel_gemini.stream import StreamParser
from llmkernel_http import HTTPProvider, aiter_sse, headers_of, request_id_from, snippet

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Mapping, Sequence

_MAX_MODEL_PAGES = 50
#: the fields of a generateContent body that countTokens' generateContentRequest takes
#: (https://ai.google.dev/api/tokens, read 2026-12-07)
_COUNTED = ("contents", "systemInstruction", "tools", "toolConfig", "cachedContent")


class GeminiProvider(HTTPProvider):
    """One ``[providers.NAME]`` section with ``type = "gemini"``."""

    settings_class = GeminiSettings
    settings: GeminiSettings

    # ------------------------------------------------------------------ hooks

    def base_url(self) -> str:
        return self.settings.api_root

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"x-goog-api-key": key}

    def error_for_response(
        self, response: httpx.Response, body: bytes, model: str
    ) -> errors.ProviderError:
        return error_for_response(
            response.status_code, body, response.headers, provider=self.name, model=model
        )

    async def _json(
        self,
        method: str,
        path: str,
        *,
        model: str,
        body: Any = None,
        params: Mapping[str, str | int] | None = None,
    ) -> tuple[Any, Where, httpx.Response]:
        response = await self.send(method, path, model=model, json=body, params=params)
        where = Where(self.name, model, request_id_from(response.headers))
        raw = await self.read_body(response, model)
        try:
            data = json.loads(raw)
        except ValueError:
            raise where.malformed(f"a body that is not JSON: {snippet(raw)!r}") from None
        return data, where, response

    # ------------------------------------------------------------------ chat

    async def send_chat(self, request: ChatRequest) -> Response:
        body = chat_body(request, schema_format=self.settings.schema_format)
        path = f"/{model_path(request.model)}:generateContent"
        data, where, http = await self._json("POST", path, model=request.model, body=body)
        response = parse_response(data, where)
        fmt = request.response_format
        if fmt is not None and fmt.type != "text" and response.text:
            try:
                parsed = json.loads(response.text)
            except ValueError:
                parsed = None
            response = attrs.evolve(response, parsed=parsed)
        return self.with_headers(response, http)

    async def stream_events(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        model = request.model
        body = chat_body(request, schema_format=self.settings.schema_format)
        path = f"/{model_path(model)}:streamGenerateContent"
        response = await self.send(
            "POST",
            path,
            model=model,
            json=body,
            params={"alt": "sse"},
            headers={"accept": "text/event-stream"},
        )
        where = Where(self.name, model, request_id_from(response.headers))
        parser = StreamParser(where)
        try:
            yield self.opened(response)
            content_type = response.headers.get("content-type", "").lower()
            if content_type and "event-stream" not in content_type:
                raw = await self.read_body(response, model)
                raise _not_a_stream(raw, content_type, where)
            async for event in aiter_sse(response.aiter_text()):
                if not event.data.strip():
                    continue
                for item in parser.feed(event.data):
                    yield item
            for item in parser.end():
                yield item
        except httpx.TransportError as exc:
            raise self.error_for_transport(exc, model) from exc
        finally:
            await response.aclose()

    # ------------------------------------------------------------------ tokens

    async def count_tokens(self, request: ChatRequest) -> TokenCount | None:
        """Gemini's own count (``models.countTokens``) of the request
        :meth:`send_chat` would send: contents, system instruction and tools."""
        full = chat_body(request, schema_format=self.settings.schema_format)
        name = model_path(request.model)
        inner = {"model": name, **{k: full[k] for k in _COUNTED if k in full}}
        data, where, _http = await self._json(
            "POST",
            f"/{name}:countTokens",
            model=request.model,
            body={"generateContentRequest": inner},
        )
        body = as_mapping(data, "a countTokens body", where)
        tokens = body.get("totalTokens", 0 if body == {} else None)
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            raise where.malformed("a countTokens body without totalTokens")
        return TokenCount(tokens=tokens, exact=True, method="gemini countTokens")

    # ------------------------------------------------------------------ embeddings

    async def send_embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        name = model_path(request.model)
        inputs = list(request.inputs)
        vectors: list[list[float]] = []
        headers: dict[str, str] = {}
        if len(inputs) == 1:
            data, where, http = await self._json(
                "POST",
                f"/{name}:embedContent",
                model=request.model,
                body=embed_request(request.model, inputs[0], request),
            )
            body = as_mapping(data, "an embedContent body", where)
            vectors.append(_vector(body.get("embedding"), "embedding", where))
            headers = headers_of(http)
        else:
            size = self.settings.embedding_batch_size
            for start in range(0, len(inputs), size):
                batch = inputs[start : start + size]
                got, headers = await self._embed_batch(request, name, batch)
                vectors.extend(got)
        # Gemini reports no token usage for embeddings
        return EmbeddingResponse(
            vectors=vectors,
            model=bare_model_id(request.model),
            provider=self.name,
            usage=Usage(),
            headers=headers,
        )

    async def _embed_batch(
        self, request: EmbeddingRequest, name: str, batch: Sequence[str]
    ) -> tuple[list[list[float]], dict[str, str]]:
        data, where, http = await self._json(
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
        vectors = [_vector(e, f"embeddings[{i}]", where) for i, e in enumerate(embeddings)]
        return vectors, headers_of(http)

    # ------------------------------------------------------------------ models

    async def fetch_models(self) -> list[ModelInfo]:
        models: list[ModelInfo] = []
        token: str | None = None
        for _ in range(_MAX_MODEL_PAGES):
            params: dict[str, str | int] = {"pageSize": 1000}
            if token:
                params["pageToken"] = token
            data, where, _http = await self._json("GET", "/models", model="", params=params)
            body = as_mapping(data, "a model list", where)
            for i, item in enumerate(optional_list(body, "models", "model list", where)):
                models.append(self._model_info(as_mapping(item, f"models[{i}]", where)))
            next_token = body.get("nextPageToken")
            if not isinstance(next_token, str) or not next_token or next_token == token:
                break
            token = next_token
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

    async def probe(self) -> str:
        data, where, _http = await self._json("GET", "/models", model="", params={"pageSize": 1})
        as_mapping(data, "a model list", where)
        return "model list answered"

    def capabilities(self, model: str) -> Capabilities | None:
        return capabilities_for(model)

    def declared_models(self) -> list[str]:
        return list(dict.fromkeys([*self.settings.models, *KNOWN_MODELS]))


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
