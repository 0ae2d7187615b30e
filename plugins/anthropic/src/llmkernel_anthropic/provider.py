"""The Anthropic provider: the Messages API over httpx, with SSE streaming.

Built on :class:`llmkernel_http.HTTPProvider` (client, timeouts, headers,
redaction); this module holds what Anthropic's API makes different."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import httpx

from llmkernel import errors
from llmkernel.types import (
    Capabilities,
    ChatRequest,
    ModelInfo,
    Response,
    StreamEvent,
)
from llmkernel_anthropic.convert import chat_body, format_tool_name
from llmkernel_anthropic.errors import error_for_response
from llmkernel_anthropic.models import KNOWN_MODELS, capabilities_for
from llmkernel_anthropic.parse import parse_response
from llmkernel_anthropic.settings import AnthropicSettings
from llmkernel_anthropic.stream import StreamParser
from llmkernel_http import HTTPProvider, SSEDecoder, request_id_from, snippet

MESSAGES_PATH = "/v1/messages"
MODELS_PATH = "/v1/models"
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
        payload, response = await self.send_json("POST", MESSAGES_PATH, model=model, json=body)
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
        response = await self.send(
            "POST", MESSAGES_PATH, model=model, json=body, headers={"accept": "text/event-stream"}
        )
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
