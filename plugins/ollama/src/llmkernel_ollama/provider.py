"""The Ollama provider: Ollama's native API (``/api/chat``, ``/api/embed``,
``/api/tags``, ``/api/show``) over one pooled httpx client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import httpx

from llmkernel import errors
from llmkernel.provider import ProviderConfig
from llmkernel.types import (
    Capabilities,
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelInfo,
    Response,
    StreamEvent,
    Usage,
)
from llmkernel_http import HTTPProvider, aiter_ndjson, headers_of, request_id_from
from llmkernel_http.wire import plain
from llmkernel_ollama.convert import chat_body
from llmkernel_ollama.errors import error_for_response, error_in_body
from llmkernel_ollama.models import capabilities_from_show, declared, known_capabilities
from llmkernel_ollama.parse import count, malformed, parse_response
from llmkernel_ollama.settings import OllamaSettings
from llmkernel_ollama.stream import StreamParser

USER_AGENT = "llmkernel-ollama/0.1.0"


class OllamaProvider(HTTPProvider):
    """One ``[providers.NAME]`` table with ``type = "ollama"``."""

    settings_class = OllamaSettings
    settings: OllamaSettings

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        # The native API lives under /api; accept a base_url written with it.
        self._root = self.settings.base_url.rstrip("/").removesuffix("/api")
        self._shown: dict[str, Capabilities] = {}

    # ------------------------------------------------------------------ hooks

    def base_url(self) -> str:
        return self._root

    def default_headers(self) -> dict[str, str]:
        return {"accept": "application/json", "user-agent": USER_AGENT}

    def error_for_response(
        self, response: httpx.Response, body: bytes, model: str
    ) -> errors.ProviderError:
        return error_for_response(
            response.status_code, body, response.headers, provider=self.name, model=model
        )

    def error_for_transport(self, exc: Exception, model: str) -> errors.ProviderError:
        """A refused connection is explained: Ollama is a local server that may not
        be running."""
        if isinstance(exc, httpx.ConnectError):
            return errors.NetworkError(
                f"Ollama is not reachable at {self._root} ({type(exc).__name__}: {exc}); "
                "is the server running (`ollama serve`) and base_url right?",
                provider=self.name,
                model=model,
            )
        return super().error_for_transport(exc, model)

    def malformed(
        self, what: str, *, model: str, response: httpx.Response | None = None
    ) -> errors.MalformedResponseError:
        error = malformed(what, provider=self.name, model=model)
        if response is not None:
            error.status = response.status_code
            error.request_id = request_id_from(response.headers)
        return error

    async def _call(
        self, method: str, path: str, *, model: str, body: Mapping[str, Any] | None = None
    ) -> tuple[Any, httpx.Response]:
        """Send one non-streamed request; the decoded JSON answer, or the kernel
        error for a failure (an ``error`` in a 200 body included)."""
        data, response = await self.send_json(method, path, model=model, json=body)
        if isinstance(data, Mapping) and data.get("error") is not None:
            message = data["error"]
            error = error_in_body(
                message if isinstance(message, str) else json.dumps(message)[:500],
                provider=self.name,
                model=model,
                request_id=request_id_from(response.headers),
            )
            error.headers = headers_of(response)
            raise error
        return data, response

    # ------------------------------------------------------------------ chat

    async def send_chat(self, request: ChatRequest) -> Response:
        body = chat_body(request, self.settings, stream=False, provider=self.name)
        data, response = await self._call("POST", "/api/chat", model=request.model, body=body)
        answer = parse_response(
            data, provider=self.name, model=request.model, json_output="format" in body
        )
        return self.with_headers(answer, response)

    async def stream_events(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        model = request.model
        body = chat_body(request, self.settings, stream=True, provider=self.name)
        response = await self.send("POST", "/api/chat", model=model, json=body)
        text = response.aiter_text()
        lines = aiter_ndjson(text)
        try:
            yield self.opened(response)
            parser = StreamParser(
                provider=self.name, model=model, request_id=request_id_from(response.headers)
            )
            while True:
                try:
                    data = await anext(lines)
                except StopAsyncIteration:
                    break
                except httpx.HTTPError as exc:
                    raise self.error_for_transport(exc, model) from exc
                except ValueError as exc:
                    raise malformed(
                        f"the stream is not NDJSON ({exc})", provider=self.name, model=model
                    ) from None
                for event in parser.feed(data):
                    yield event
            parser.end()
        finally:
            await _aclose(lines)
            await _aclose(text)
            await response.aclose()

    # ------------------------------------------------------------------ embeddings

    async def send_embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """``POST /api/embed`` in batches of ``embedding_batch_size`` texts; usage is
        the sum of each batch's ``prompt_eval_count``."""
        model = request.model
        vectors: list[list[float]] = []
        usage = Usage()
        answered = model
        size = self.settings.embedding_batch_size
        batches: Sequence[tuple[str, ...]] = [
            request.inputs[i : i + size] for i in range(0, len(request.inputs), size)
        ]
        headers: dict[str, str] = {}
        for batch in batches:
            data, response = await self._call(
                "POST", "/api/embed", model=model, body=self._embed_body(request, batch)
            )
            headers = headers_of(response)
            vectors.extend(self._vectors(data, len(batch), model))
            usage = usage + Usage(input_tokens=count(data.get("prompt_eval_count")))
            if isinstance(data.get("model"), str) and data["model"]:
                answered = data["model"]
        return EmbeddingResponse(
            vectors=vectors, model=answered, provider=self.name, usage=usage, headers=headers
        )

    def _embed_body(self, request: EmbeddingRequest, batch: Sequence[str]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": request.model, "input": list(batch)}
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        if self.settings.truncate is not None:
            body["truncate"] = self.settings.truncate
        if self.settings.keep_alive is not None:
            body["keep_alive"] = self.settings.keep_alive
        options: dict[str, Any] = plain(self.settings.model_options)
        if self.settings.num_ctx is not None:
            options["num_ctx"] = self.settings.num_ctx
        for key, value in request.options.items():
            if key in ("truncate", "keep_alive", "dimensions"):
                body[key] = value
            elif key == "options" and isinstance(value, Mapping):
                options.update(plain(value))
            else:
                options[key] = plain(value)
        if options:
            body["options"] = options
        return body

    def _vectors(self, data: Any, expected: int, model: str) -> list[list[float]]:
        raw = data.get("embeddings") if isinstance(data, Mapping) else None
        if not isinstance(raw, list) or len(raw) != expected:
            got = len(raw) if isinstance(raw, list) else "no"
            raise malformed(
                f"/api/embed returned {got} embeddings for {expected} inputs",
                provider=self.name,
                model=model,
            )
        vectors = []
        for vector in raw:
            if not isinstance(vector, list) or not all(
                isinstance(x, int | float) and not isinstance(x, bool) for x in vector
            ):
                raise malformed(
                    "an embedding is not a list of numbers", provider=self.name, model=model
                )
            vectors.append([float(x) for x in vector])
        return vectors

    # ------------------------------------------------------------------ models

    async def fetch_models(self) -> list[ModelInfo]:
        """The models pulled on the server (``GET /api/tags``)."""
        data, _response = await self._call("GET", "/api/tags", model="")
        raw = data.get("models") if isinstance(data, Mapping) else None
        if not isinstance(raw, list):
            raise malformed("/api/tags has no models list", provider=self.name, model="")
        models = []
        for item in raw:
            if not isinstance(item, Mapping):
                continue
            name = item.get("name") or item.get("model")
            if isinstance(name, str) and name:
                models.append(
                    ModelInfo(id=name, provider=self.name, capabilities=self.capabilities(name))
                )
        return models

    async def fetch_capabilities(self, model: str) -> Capabilities:
        """Ask the server what ``model`` can do (``POST /api/show``: its
        ``capabilities`` and context length); later :meth:`capabilities` calls for
        the model return this answer."""
        try:
            async with asyncio.timeout(self.settings.timeout):
                data, _response = await self._call(
                    "POST", "/api/show", model=model, body={"model": model}
                )
        except errors.ProviderError as exc:
            self.scrub(exc)
            raise
        if not isinstance(data, Mapping):
            raise malformed("/api/show is not a JSON object", provider=self.name, model=model)
        found = capabilities_from_show(model, data)
        self._shown[model] = found
        return found

    def capabilities(self, model: str) -> Capabilities | None:
        return self._shown.get(model) or known_capabilities(model)

    def declared_models(self) -> list[str]:
        return declared(self.settings.models)

    async def probe(self) -> str:
        """Lists the models (``GET /api/tags``): cheap, and it checks the key when
        the server wants one."""
        models = await self.fetch_models()
        return f"{len(models)} models at {self._root}"


async def _aclose(iterator: object) -> None:
    """Close an async generator left suspended (the consumer stopped early)."""
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()
