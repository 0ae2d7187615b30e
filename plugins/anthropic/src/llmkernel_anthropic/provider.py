"""The Anthropic provider: the Messages API over httpx, with SSE streaming."""

from __future__ import annotations

import asyncio
import builtins
import time
from typing import TYPE_CHECKING, Any

import httpx

from llmkernel import errors
from llmkernel.http import (
    SSEDecoder,
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
    Health,
    ModelInfo,
    ReasoningDelta,
    Response,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
)
from llmkernel_anthropic.convert import build_body, format_tool_name
from llmkernel_anthropic.errors import error_from_response
from llmkernel_anthropic.models import KNOWN_MODELS, capabilities_for
from llmkernel_anthropic.parse import parse_message
from llmkernel_anthropic.settings import AnthropicSettings
from llmkernel_anthropic.stream import StreamParser

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

MESSAGES_PATH = "/v1/messages"
MODELS_PATH = "/v1/models"
MODELS_PAGE_SIZE = 1000
_CONTENT = (TextDelta, ReasoningDelta, ToolCallDelta)


class AnthropicProvider(Provider):
    """One ``[providers.NAME]`` instance of ``type = "anthropic"``."""

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self.settings = parse_options(
            AnthropicSettings, config.options, where=config.where or f"[providers.{config.name}]"
        )
        self.call_timeout = self.settings.timeout
        self._transport = config.transport
        self._client: httpx.AsyncClient | None = None

    # ------------------------------------------------------------------ client

    def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = {
                "anthropic-version": self.settings.api_version,
                "content-type": "application/json",
                "accept": "application/json",
            }
            key = self.settings.api_key(provider=self.name)
            if key:
                headers["x-api-key"] = key
            if self.settings.beta:
                headers["anthropic-beta"] = ",".join(self.settings.beta)
            self._client = make_client(
                self.settings,
                base_url=self.settings.api_root,
                headers=headers,
                transport=self._transport,
            )
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # ------------------------------------------------------------------ chat

    async def chat(self, request: ChatRequest) -> Response:
        client = self._get_client()
        body = build_body(request, self.settings, stream=False)
        model = request.model
        http_request = client.build_request("POST", MESSAGES_PATH, json=body)

        def not_json(snippet: str) -> errors.MalformedResponseError:
            return errors.MalformedResponseError(
                f"anthropic answered {http_response.status_code} with a body that is not JSON: "
                f"{snippet!r}",
                provider=self.name,
                model=model,
                status=http_response.status_code,
                request_id=request_id_from(http_response.headers),
            )

        try:
            async with asyncio.timeout(self.settings.timeout):
                http_response = await self._send(client, http_request, model)
                payload = await read_json(
                    http_response, provider=self.name, model=model, malformed=not_json
                )
        except builtins.TimeoutError:
            raise self._timeout(
                model, f"no answer within timeout={self.settings.timeout}s"
            ) from None
        return parse_message(
            payload,
            provider=self.name,
            model=model,
            format_tool=format_tool_name(request),
            request_id=request_id_from(http_response.headers),
        )

    # ------------------------------------------------------------------ stream

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        client = self._get_client()
        body = build_body(request, self.settings, stream=True)
        model = request.model
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.settings.timeout
        first_deadline = deadline
        if self.settings.first_token_timeout is not None:
            first_deadline = min(deadline, started + self.settings.first_token_timeout)

        def timed_out(first: bool) -> errors.TimeoutError:
            if first and first_deadline < deadline:
                return self._timeout(
                    model,
                    f"no first token within first_token_timeout="
                    f"{self.settings.first_token_timeout}s",
                )
            return self._timeout(
                model, f"the stream took longer than timeout={self.settings.timeout}s"
            )

        http_request = client.build_request(
            "POST", MESSAGES_PATH, json=body, headers={"accept": "text/event-stream"}
        )
        try:
            async with asyncio.timeout_at(first_deadline):
                http_response = await self._send(client, http_request, model)
        except builtins.TimeoutError:
            raise timed_out(True) from None
        request_id = request_id_from(http_response.headers)
        try:
            content_type = http_response.headers.get("content-type", "")
            if content_type and "event-stream" not in content_type:
                try:
                    async with asyncio.timeout_at(first_deadline):
                        raw = await http_response.aread()
                except builtins.TimeoutError:
                    raise timed_out(True) from None
                except httpx.HTTPError as exc:
                    raise error_for_transport(exc, provider=self.name, model=model) from exc
                text = raw.decode("utf-8", errors="replace")
                snippet = " ".join(text.split())[:200]
                raise errors.MalformedResponseError(
                    f"anthropic answered a stream request with {content_type!r}, "
                    f"not an event stream: {snippet!r}",
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
            chunks = http_response.aiter_text()
            got_content = False
            while True:
                try:
                    async with asyncio.timeout_at(deadline if got_content else first_deadline):
                        chunk = await anext(chunks, None)
                except builtins.TimeoutError:
                    raise timed_out(not got_content) from None
                except httpx.HTTPError as exc:
                    error = error_for_transport(exc, provider=self.name, model=model)
                    error.request_id = request_id
                    raise error from exc
                sse_events = decoder.flush() if chunk is None else decoder.feed(chunk)
                for sse in sse_events:
                    for event in parser.feed(sse):
                        if isinstance(event, _CONTENT):
                            got_content = True
                        yield event
                if chunk is None:
                    break
            for event in parser.finish():
                yield event
        finally:
            await http_response.aclose()

    # ------------------------------------------------------------------ models

    async def list_models(self) -> list[ModelInfo]:
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

    async def health(self) -> Health:
        started = time.perf_counter()
        try:
            page = await self._get_json(MODELS_PATH, {"limit": 1})
        except Exception as exc:  # health never raises
            return Health(ok=False, latency=time.perf_counter() - started, detail=str(exc))
        count = len(page.get("data") or []) if isinstance(page.get("data"), list) else 0
        return Health(
            ok=True,
            latency=time.perf_counter() - started,
            detail=f"model list answered ({count} model{'s' if count != 1 else ''})",
        )

    async def _get_json(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        client = self._get_client()
        request = client.build_request("GET", path, params=params)

        def not_an_object(snippet: str) -> errors.MalformedResponseError:
            return errors.MalformedResponseError(
                f"anthropic answered {path} with something that is not a JSON object: {snippet!r}",
                provider=self.name,
                status=200,
                request_id=request_id_from(response.headers),
            )

        try:
            async with asyncio.timeout(self.settings.timeout):
                response = await self._send(client, request, "")
                payload = await read_json(
                    response, provider=self.name, model="", malformed=not_an_object
                )
        except builtins.TimeoutError:
            raise self._timeout("", f"no answer within timeout={self.settings.timeout}s") from None
        if not isinstance(payload, dict):
            raise not_an_object(" ".join(response.text.split())[:200])
        return payload

    def declared_models(self) -> list[str]:
        return list(dict.fromkeys([*self.settings.models, *KNOWN_MODELS]))

    def capabilities(self, model: str) -> Capabilities | None:
        return capabilities_for(model)

    # ------------------------------------------------------------------ helpers

    def _timeout(self, model: str, message: str) -> errors.TimeoutError:
        return errors.TimeoutError(message, provider=self.name, model=model)

    async def _send(
        self, client: httpx.AsyncClient, request: httpx.Request, model: str
    ) -> httpx.Response:
        """:func:`send`, with Anthropic's error for an error status."""
        return await send(
            client,
            request,
            provider=self.name,
            model=model,
            error_for=lambda response, _body: error_from_response(
                response.status_code,
                response.headers,
                response.text,
                provider=self.name,
                model=model,
            ),
        )
