"""The Ollama provider: Ollama's native API (``/api/chat``, ``/api/embed``,
``/api/tags``, ``/api/show``) over one pooled httpx client."""

from __future__ import annotations

import asyncio
import builtins
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import httpx

from llmkernel import errors
from llmkernel.http import (
    aiter_ndjson,
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
from llmkernel_ollama.convert import build_chat_body, plain
from llmkernel_ollama.errors import error_for_response, error_in_body
from llmkernel_ollama.models import capabilities_from_show, declared, known_capabilities
from llmkernel_ollama.parse import count, malformed, parse_chat
from llmkernel_ollama.settings import OllamaSettings
from llmkernel_ollama.stream import StreamParser

USER_AGENT = "llmkernel-ollama/0.1.0"


class OllamaProvider(Provider):
    """One ``[providers.NAME]`` table with ``type = "ollama"``."""

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        where = config.where or f"[providers.{config.name}]"
        self.settings = parse_options(OllamaSettings, config.options, where=where)
        self.call_timeout = self.settings.timeout
        base = self.settings.base_url.rstrip("/")
        # The native API lives under /api; accept a base_url written with it.
        self.base_url = base.removesuffix("/api")
        self._transport = config.transport
        self._client: httpx.AsyncClient | None = None
        self._shown: dict[str, Capabilities] = {}

    # ------------------------------------------------------------------ client

    def _http(self, model: str) -> httpx.AsyncClient:
        """The pooled client, built at the first request (when the key is read)."""
        if self._client is None:
            try:
                key = self.settings.api_key(provider=self.name)
            except errors.AuthenticationError as exc:
                exc.model = model
                raise
            headers = {"accept": "application/json", "user-agent": USER_AGENT}
            if key:
                headers["authorization"] = f"Bearer {key}"
            self._client = make_client(
                self.settings,
                base_url=self.base_url,
                headers=headers,
                transport=self._transport,
            )
        return self._client

    def _transport_error(self, exc: Exception, model: str) -> errors.ProviderError:
        if isinstance(exc, httpx.ConnectError):
            return errors.NetworkError(
                f"Ollama is not reachable at {self.base_url} ({type(exc).__name__}: {exc}); "
                "is the server running (`ollama serve`) and base_url right?",
                provider=self.name,
                model=model,
            )
        return error_for_transport(exc, provider=self.name, model=model)

    def _timeout_error(self, model: str, what: str) -> errors.TimeoutError:
        return errors.TimeoutError(what, provider=self.name, model=model)

    async def _send(
        self, client: httpx.AsyncClient, request: httpx.Request, model: str
    ) -> httpx.Response:
        """:func:`send`, with a refused connection explained (Ollama is a local server
        that may not be running)."""
        try:
            return await send(
                client,
                request,
                provider=self.name,
                model=model,
                error_for=lambda response, raw: error_for_response(
                    response.status_code, raw, response.headers, provider=self.name, model=model
                ),
            )
        except errors.NetworkError as exc:
            if isinstance(exc.__cause__, httpx.ConnectError):
                raise self._transport_error(exc.__cause__, model) from exc.__cause__
            raise

    async def _call(
        self, method: str, path: str, *, model: str, body: Mapping[str, Any] | None = None
    ) -> Any:
        """Send one non-streamed request within ``timeout``; the decoded JSON answer,
        or the kernel error for a failure."""
        client = self._http(model)
        request = client.build_request(method, path, json=body)

        def not_json(snippet: str) -> errors.MalformedResponseError:
            error = malformed(
                f"{method} {path} returned a body that is not JSON: {snippet!r}",
                provider=self.name,
                model=model,
            )
            error.status = response.status_code
            error.request_id = request_id_from(response.headers)
            return error

        try:
            async with asyncio.timeout(self.settings.timeout):
                response = await self._send(client, request, model)
                data = await read_json(
                    response, provider=self.name, model=model, malformed=not_json
                )
        except builtins.TimeoutError:
            raise self._timeout_error(
                model, f"no complete answer within timeout={self.settings.timeout}s"
            ) from None
        if isinstance(data, Mapping) and data.get("error") is not None:
            message = data["error"]
            raise error_in_body(
                message if isinstance(message, str) else json.dumps(message)[:500],
                provider=self.name,
                model=model,
                request_id=request_id_from(response.headers),
            )
        return data

    # ------------------------------------------------------------------ chat

    async def chat(self, request: ChatRequest) -> Response:
        body = build_chat_body(request, self.settings, stream=False, provider=self.name)
        data = await self._call("POST", "/api/chat", model=request.model, body=body)
        return parse_chat(
            data, provider=self.name, model=request.model, json_output="format" in body
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        model = request.model
        body = build_chat_body(request, self.settings, stream=True, provider=self.name)
        client = self._http(model)
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.settings.timeout
        first = self.settings.first_token_timeout
        first_deadline = deadline if first is None else min(deadline, started + first)

        def timed_out(got_first: bool) -> errors.TimeoutError:
            if not got_first and first is not None and first_deadline < deadline:
                return self._timeout_error(
                    model, f"no first token within first_token_timeout={first}s"
                )
            return self._timeout_error(
                model, f"the stream did not finish within timeout={self.settings.timeout}s"
            )

        http_request = client.build_request("POST", "/api/chat", json=body)
        try:
            async with asyncio.timeout_at(first_deadline):
                response = await self._send(client, http_request, model)
        except builtins.TimeoutError:
            raise timed_out(False) from None

        text = response.aiter_text()
        lines = aiter_ndjson(text)
        try:
            parser = StreamParser(
                provider=self.name, model=model, request_id=request_id_from(response.headers)
            )
            while True:
                try:
                    async with asyncio.timeout_at(deadline if parser.started else first_deadline):
                        data = await anext(lines)
                except StopAsyncIteration:
                    break
                except builtins.TimeoutError:
                    raise timed_out(parser.started) from None
                except httpx.HTTPError as exc:
                    raise self._transport_error(exc, model) from exc
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

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
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
        for batch in batches:
            data = await self._call(
                "POST", "/api/embed", model=model, body=self._embed_body(request, batch)
            )
            vectors.extend(self._vectors(data, len(batch), model))
            usage = usage + Usage(input_tokens=count(data.get("prompt_eval_count")))
            if isinstance(data.get("model"), str) and data["model"]:
                answered = data["model"]
        return EmbeddingResponse(vectors=vectors, model=answered, usage=usage)

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

    async def list_models(self) -> list[ModelInfo]:
        """The models pulled on the server (``GET /api/tags``)."""
        data = await self._call("GET", "/api/tags", model="")
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
        data = await self._call("POST", "/api/show", model=model, body={"model": model})
        if not isinstance(data, Mapping):
            raise malformed("/api/show is not a JSON object", provider=self.name, model=model)
        found = capabilities_from_show(model, data)
        self._shown[model] = found
        return found

    def capabilities(self, model: str) -> Capabilities | None:
        return self._shown.get(model) or known_capabilities(model)

    def declared_models(self) -> list[str]:
        return declared(self.settings.models)

    async def health(self) -> Health:
        """Lists the models (``GET /api/tags``): cheap, and it checks the key when
        the server wants one."""
        started = time.monotonic()
        try:
            models = await self.list_models()
        except Exception as exc:  # health never raises
            return Health(ok=False, latency=time.monotonic() - started, detail=str(exc))
        return Health(
            ok=True,
            latency=time.monotonic() - started,
            detail=f"{len(models)} models at {self.base_url}",
        )

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


async def _aclose(iterator: object) -> None:
    """Close an async generator left suspended (the consumer stopped early)."""
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()
