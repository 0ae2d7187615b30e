"""A tiny HTTP provider for the routing tests: it speaks a small JSON protocol to
``llmkernel_http.testing.fake_server.FakeServer`` through the kernel's shared HTTP helpers
(``llmkernel_http``), so errors, timeouts, resets and cut streams are real ones and
every upstream attempt is counted at the server.

    POST /v1/chat  {"model", "prompt", "stream"}
      -> 200 {"text": ...}                         (chat)
      -> 200 text/event-stream data: {"text": ...} ... data: [DONE]   (stream)
      -> 4xx/5xx {"error": {"message", "code"}} with Retry-After when rate limited
    GET /v1/health -> 200 when healthy, else its status (the provider's health())
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Mapping
from typing import Any

import attrs
import httpx

from llmkernel import hookimpl
from llmkernel.errors import ProviderError
from llmkernel.errors import TimeoutError as ProviderTimeoutError
from llmkernel.options import parse_options
from llmkernel.provider import Provider, ProviderConfig
from llmkernel.types import (
    Capabilities,
    ChatRequest,
    Health,
    Message,
    Response,
    StreamEvent,
    TextDelta,
    TextPart,
    Usage,
)
from llmkernel_http import (
    HTTPSettings,
    aiter_sse,
    error_for_status,
    error_for_transport,
    make_client,
    parse_retry_after,
    read_json,
    request_id_from,
    send,
)
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer

PATH = "/v1/chat"
HEALTH = "/v1/health"


@attrs.frozen(kw_only=True)
class WireSettings(HTTPSettings):
    capabilities: dict[str, Any] | None = None  # Capabilities fields, or unknown


class WireProvider(Provider):
    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self.settings = parse_options(WireSettings, config.options, where=config.where)
        self.call_timeout = self.settings.timeout
        self.base_url = self.settings.base_url
        self._transport = config.transport
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = make_client(
                self.settings,
                base_url=self.settings.base_url,
                headers={},
                transport=self._transport,
            )
        return self._client

    def capabilities(self, model: str) -> Capabilities | None:
        caps = self.settings.capabilities
        return None if caps is None else Capabilities(**caps)

    def _error(self, response: httpx.Response, body: bytes) -> ProviderError:
        try:
            error = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            error = {"message": body.decode(errors="replace")[:100]}
        return error_for_status(
            response.status_code,
            str(error.get("message", "")),
            provider=self.name,
            code=error.get("code"),
            request_id=request_id_from(response.headers),
            retry_after=parse_retry_after(response.headers),
        )

    def _request(self, request: ChatRequest, stream: bool) -> httpx.Request:
        prompt = request.messages[-1].text if request.messages else ""
        body = {"model": request.model, "prompt": prompt, "stream": stream}
        return self.client().build_request("POST", PATH, json=body)

    async def chat(self, request: ChatRequest) -> Response:
        try:
            async with asyncio.timeout(self.settings.timeout):
                response = await send(
                    self.client(),
                    self._request(request, False),
                    provider=self.name,
                    model=request.model,
                    error_for=self._error,
                )
                data = await read_json(response, provider=self.name, model=request.model)
        except TimeoutError:
            raise ProviderTimeoutError(
                f"no answer in {self.settings.timeout} s", provider=self.name, model=request.model
            ) from None
        text = str(data["text"])
        return Response(
            message=Message(role="assistant", content=(TextPart(text=text),)),
            usage=Usage(input_tokens=5, output_tokens=len(text.split())),
            model=request.model,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        response = await send(
            self.client(),
            self._request(request, True),
            provider=self.name,
            model=request.model,
            error_for=self._error,
        )
        try:
            async for event in aiter_sse(response.aiter_text()):
                if event.data == "[DONE]":
                    break
                yield TextDelta(text=json.loads(event.data)["text"])
        except httpx.RequestError as exc:
            raise error_for_transport(exc, provider=self.name, model=request.model) from exc
        finally:
            await response.aclose()

    async def health(self) -> Health:
        response = await self.client().get(HEALTH)
        if response.status_code == 200:
            return Health(ok=True, detail="ok")
        return Health(ok=False, detail=f"HTTP {response.status_code} from {HEALTH}")

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


class WirePlugin:
    """Register with ``Kernel.from_config(config, plugins=[WirePlugin()])``."""

    @hookimpl
    def provide_chat(self, config: ProviderConfig) -> Provider | None:
        return WireProvider(config) if config.type == "wire" else None


# ---------------------------------------------------------------------- server side


class NoDelayServer(FakeServer):
    """FakeServer with TCP_NODELAY on its connections. FakeServer writes the status
    line and the body in separate sends; on a kept-alive connection Nagle's algorithm
    holds the body until the client's delayed ACK, about 40 ms a response."""

    def _serve_connection(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super()._serve_connection(sock)


def ok(text: str = "fine") -> FakeResponse:
    return FakeResponse.json_body({"text": text})


def ok_stream(*texts: str) -> FakeResponse:
    pieces = [f"data: {json.dumps({'text': t})}\n\n" for t in texts or ("fine",)]
    return FakeResponse.sse([*pieces, "data: [DONE]\n\n"])


def cut_stream(first: str = "half") -> FakeResponse:
    """A stream that dies after its first chunk (the connection closes mid-body)."""
    return FakeResponse.sse([f"data: {json.dumps({'text': first})}\n\n"], truncate=True)


def error(status: int, message: str = "nope", headers: Mapping[str, str] | None = None):
    return FakeResponse.json_body(
        {"error": {"message": message, "code": None}}, status=status, headers=headers
    )


def reset() -> FakeResponse:
    """The connection is reset after the status line and headers."""
    return FakeResponse(pieces=[], reset=True)


__all__ = [
    "HEALTH",
    "PATH",
    "NoDelayServer",
    "WirePlugin",
    "WireProvider",
    "cut_stream",
    "error",
    "ok",
    "ok_stream",
    "reset",
]
