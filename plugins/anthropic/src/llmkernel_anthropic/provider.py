"""The Anthropic provider: the Messages API over httpx, with SSE streaming, and its
token counting endpoint.

Built on :class:`llmkernel_http.HTTPProvider` (client, timeouts, headers,
redaction); this module holds what Anthropic's API makes different.

A request whose ``metadata`` carries ``anthropic-version`` or ``anthropic-beta``
(the gateway puts its client's headers there) sends them on: the version instead of
the configured ``api_version``, the betas added to the configured ``beta`` list.
``metadata`` is otherwise never sent upstream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx

from llmkernel import errors
from llmkernel.types import (
    Capabilities,
    ChatRequest,
    ModelInfo,
    Response,
    StreamEvent,
    TokenCount,
)
from llmkernel_anthropic.convert import chat_body, format_tool_name
from llmkernel_anthropic.errors import error_for_response
from llmkernel_anthropic.models import KNOWN_MODELS, capabilities_for
from llmkernel_anthropic.parse import parse_response
from llmkernel_anthropic.settings import AnthropicSettings
from llmkernel_anthropic.stream import StreamParser
from llmkernel_http import HTTPProvider, SSEDecoder, request_id_from, snippet

MESSAGES_PATH = "/v1/messages"
COUNT_PATH = "/v1/messages/count_tokens"
MODELS_PATH = "/v1/models"
#: the fields of a Messages body that ``count_tokens`` takes
COUNTED = ("model", "messages", "system", "tools", "tool_choice", "thinking")
#: request metadata sent on as headers (from the gateway's client)
PASSED_HEADERS = ("anthropic-version", "anthropic-beta")
MODELS_PAGE_SIZE = 1000


class AnthropicProvider(HTTPProvider):
    """One ``[providers.NAME]`` instance of ``type = "anthropic"``."""

    settings_class = AnthropicSettings
    settings: AnthropicSettings

    # ------------------------------------------------------------------ hooks

    def base_url(self) -> str:
        return self.settings.api_root

    def default_headers(self) -> dict[str, str]:
        headers = {
            "anthropic-version": self.settings.api_version,
            "content-type": "application/json",
            "accept": "application/json",
        }
        if self.settings.beta:
            headers["anthropic-beta"] = ",".join(self.settings.beta)
        return headers

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"x-api-key": key}

    def passed_headers(self, request: ChatRequest) -> dict[str, str]:
        """The ``anthropic-version`` and ``anthropic-beta`` the request's metadata
        asks for (betas merged with the configured ones, in order, once each)."""
        metadata = request.metadata
        if not metadata or not any(name in metadata for name in PASSED_HEADERS):
            return {}
        headers: dict[str, str] = {}
        version = metadata.get("anthropic-version", "").strip()
        if version:
            headers["anthropic-version"] = version
        asked = [b.strip() for b in metadata.get("anthropic-beta", "").split(",") if b.strip()]
        if asked:
            headers["anthropic-beta"] = ",".join(dict.fromkeys([*self.settings.beta, *asked]))
        return headers

    async def _post(
        self, path: str, request: ChatRequest, body: dict[str, Any]
    ) -> tuple[Any, httpx.Response]:
        """POST ``body``; its JSON answer and the response."""
        headers = self.passed_headers(request)
        if not headers:
            return await self.send_json("POST", path, model=request.model, json=body)
        response = await self.send("POST", path, model=request.model, json=body, headers=headers)
        raw = await self.read_body(response, request.model)
        try:
            return json.loads(raw), response
        except ValueError:
            raise self.malformed(
                f"a body that is not JSON: {snippet(raw)!r}", model=request.model, response=response
            ) from None

    def error_for_response(
        self, response: httpx.Response, body: bytes, model: str
    ) -> errors.ProviderError:
        return error_for_response(
            response.status_code,
            response.headers,
            body.decode("utf-8", errors="replace"),
            provider=self.name,
            model=model,
        )

    # ------------------------------------------------------------------ chat

    async def send_chat(self, request: ChatRequest) -> Response:
        model = request.model
        body = chat_body(request, self.settings, stream=False)
        payload, response = await self._post(MESSAGES_PATH, request, body)
        answer = parse_response(
            payload,
            provider=self.name,
            model=model,
            format_tool=format_tool_name(request),
            request_id=request_id_from(response.headers),
        )
        return self.with_headers(answer, response)

    async def stream_events(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        model = request.model
        body = chat_body(request, self.settings, stream=True)
        headers = {"accept": "text/event-stream", **self.passed_headers(request)}
        response = await self.send("POST", MESSAGES_PATH, model=model, json=body, headers=headers)
        request_id = request_id_from(response.headers)
        try:
            yield self.opened(response)
            content_type = response.headers.get("content-type", "")
            if content_type and "event-stream" not in content_type:
                raw = await self.read_body(response, model)
                raise errors.MalformedResponseError(
                    f"anthropic answered a stream request with {content_type!r}, "
                    f"not an event stream: {snippet(raw)!r}",
                    provider=self.name,
                    model=model,
                    status=200,
                    request_id=request_id,
                )
            parser = StreamParser(
                provider=self.name,
                model=model,
                format_tool=format_tool_name(request),
                request_id=request_id,
            )
            decoder = SSEDecoder()
            try:
                async for chunk in response.aiter_text():
                    for sse in decoder.feed(chunk):
                        for event in parser.feed(sse):
                            yield event
            except httpx.HTTPError as exc:
                error = self.error_for_transport(exc, model)
                error.request_id = request_id
                raise error from exc
            for sse in decoder.flush():
                for event in parser.feed(sse):
                    yield event
            for event in parser.end():
                yield event
        finally:
            await response.aclose()

    # ------------------------------------------------------------------ tokens

    async def count_tokens(self, request: ChatRequest) -> TokenCount | None:
        """Anthropic's own count (``POST /v1/messages/count_tokens``) of the body
        :meth:`send_chat` would send: system, messages, tools and thinking."""
        full = chat_body(request, self.settings, stream=False)
        body = {name: full[name] for name in COUNTED if name in full}
        payload, response = await self._post(COUNT_PATH, request, body)
        tokens = payload.get("input_tokens") if isinstance(payload, Mapping) else None
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            raise self.malformed(
                f"a count_tokens answer without input_tokens: {snippet(str(payload))!r}",
                model=request.model,
                response=response,
            )
        return TokenCount(tokens=tokens, exact=True, method="anthropic count_tokens")

    # ------------------------------------------------------------------ models

    async def fetch_models(self) -> list[ModelInfo]:
        models: list[ModelInfo] = []
        after: str | None = None
        seen: set[str] = set()
        while True:
            params: dict[str, Any] = {"limit": MODELS_PAGE_SIZE}
            if after:
                params["after_id"] = after
            page = await self._get_json(MODELS_PATH, params)
            data = page.get("data")
            if not isinstance(data, list):
                raise errors.MalformedResponseError(
                    "anthropic's model list has no 'data' list", provider=self.name, status=200
                )
            for item in data:
                model_id = item.get("id") if isinstance(item, dict) else None
                if not isinstance(model_id, str) or not model_id or model_id in seen:
                    continue
                seen.add(model_id)
                models.append(
                    ModelInfo(
                        id=model_id,
                        provider=self.name,
                        capabilities=capabilities_for(model_id),
                        owned_by="anthropic",
                    )
                )
            last = page.get("last_id")
            if page.get("has_more") is not True or not isinstance(last, str) or last == after:
                break
            after = last
        return models

    async def _get_json(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        payload, response = await self.send_json("GET", path, model="", params=params)
        if not isinstance(payload, dict):
            raise errors.MalformedResponseError(
                f"anthropic answered {path} with something that is not a JSON object: "
                f"{snippet(str(payload))!r}",
                provider=self.name,
                status=200,
                request_id=request_id_from(response.headers),
            )
        return payload

    async def probe(self) -> str:
        page = await self._get_json(MODELS_PATH, {"limit": 1})
        data = page.get("data")
        count = len(data) if isinstance(data, list) else 0
        return f"model list answered ({count} model{'s' if count != 1 else ''})"

    def declared_models(self) -> list[str]:
        return list(dict.fromkeys([*self.settings.models, *KNOWN_MODELS]))

    def capabilities(self, model: str) -> Capabilities | None:
        return capabilities_for(model)
