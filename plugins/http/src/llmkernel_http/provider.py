"""The base class of every provider that speaks HTTP: :class:`HTTPProvider`.

It holds the policy every HTTP adapter shares, written once:

* settings parsed from ``[providers.NAME]`` (``settings_class``), unknown keys refused;
* one pooled client per instance, built at the first request (when the API key is
  read), on the transport from ``provide_transport`` or the default one
  (:class:`~llmkernel_http.AiohttpTransport`: streams over aiohttp, answers read whole
  by :meth:`send_json` over the kernel's own connections,
  :mod:`llmkernel_http.connections`); closed by :meth:`aclose`;
* :meth:`send` and :meth:`send_json`: an error status becomes the provider's error
  (:meth:`error_for_response`), a transport failure the kernel's network or timeout
  error; every error carries the response ``headers``;
* the ``timeout`` around each call and the ``first_token_timeout`` of streams,
  measured to the first *content* event (text, reasoning or a tool call), the same
  for every provider;
* secrets (the API key, auth headers) scrubbed from every error message;
* ``headers`` on every :class:`~llmkernel.types.Response`,
  :class:`~llmkernel.types.EmbeddingResponse` and, at stream open, a
  :class:`~llmkernel.types.MetadataEvent`;
* :meth:`health` from :meth:`list_models`.

A subclass writes only what its API makes different::

    class MyProvider(HTTPProvider):
        settings_class = MySettings

        def auth_headers(self, key): return {"x-api-key": key}
        def error_for_response(self, response, body, model): ...
        async def send_chat(self, request): ...              # -> Response
        async def stream_events(self, request): ...          # async generator
        async def send_embed(self, request): ...             # optional
        async def fetch_models(self): ...                    # -> list[ModelInfo]

See docs/writing-plugins.md.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import httpx

from llmkernel import errors
from llmkernel.options import parse_options
from llmkernel.provider import Provider, ProviderConfig
from llmkernel.types import (
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    Health,
    MetadataEvent,
    ModelInfo,
    ReasoningDelta,
    Response,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    replace,
)
from llmkernel_http.aiohttp_transport import AiohttpTransport
from llmkernel_http.client import default_transport, make_client
from llmkernel_http.errors import error_for_transport, request_id_from
from llmkernel_http.outgoing import headers_for
from llmkernel_http.redact import REDACTED, Secrets, collect_secrets, redact, scrub
from llmkernel_http.settings import HTTPSettings
from llmkernel_http.wire import snippet

__all__ = ["REDACTED", "HTTPProvider", "headers_of"]

_CONTENT = (TextDelta, ReasoningDelta, ToolCallDelta)
#: Request URLs kept prebuilt per provider instance.
_URL_CACHE_SIZE = 256
#: The longest a health check waits.
HEALTH_TIMEOUT = 30.0

T = TypeVar("T")


def headers_of(response: httpx.Response) -> dict[str, str]:
    """A response's headers as a plain dict with lower-case names (repeated headers
    joined with ``", "``)."""
    found: dict[str, str] = {}
    for name, value in response.headers.multi_items():
        found[name] = f"{found[name]}, {value}" if name in found else value
    return found


class HTTPProvider(Provider):
    """A provider over HTTP. See the module docstring for what a subclass writes."""

    #: the settings class for ``[providers.NAME]`` (a subclass of HTTPSettings).
    settings_class: ClassVar[type[HTTPSettings]] = HTTPSettings
    settings: Any

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self.settings = self.load_settings(config)
        self.call_timeout = self.settings.timeout
        self._transport = config.transport
        self._client: httpx.AsyncClient | None = None
        self._secrets: Secrets = Secrets()
        # the hot path: requests go straight to the transport with prebuilt URLs
        self._direct: httpx.AsyncBaseTransport | None = None
        self._base = ""
        self._urls: dict[str, httpx.URL] = {}
        self._extensions: dict[str, Any] = {}
        # send_json's fast path: AiohttpTransport.exchange (the kernel's own connections,
        # llmkernel_http.connections; aiohttp behind a proxy), no httpx request objects
        self._fast: AiohttpTransport | None = None
        self._per_request = False  # request_headers() is overridden
        self._fast_headers = _Headers()
        self._fast_json_headers = _Headers()

    def load_settings(self, config: ProviderConfig) -> Any:
        """The instance's settings from its table; override to post-process them."""
        where = config.where or f"[providers.{config.name}]"
        return parse_options(self.settings_class, config.options, where=where)

    # ------------------------------------------------------------ what a subclass sets

    def base_url(self) -> str:
        """The URL every request path is relative to."""
        return str(self.settings.base_url)

    def default_headers(self) -> dict[str, str]:
        """Headers sent with every request, besides auth and the configured ones."""
        return {"accept": "application/json"}

    def api_key(self, model: str = "") -> str | None:
        """The API key (from ``api_key_env``), or ``None`` to send none."""
        key: str | None = self.settings.api_key(provider=self.name, model=model)
        return key

    def auth_headers(self, key: str) -> dict[str, str]:
        """The headers that carry ``key``; ``Authorization: Bearer`` by default."""
        return {"authorization": f"Bearer {key}"}

    def query_params(self) -> Mapping[str, str]:
        """Query parameters sent with every request (Azure's ``api-version``...)."""
        return {}

    def error_for_response(
        self, response: httpx.Response, body: bytes, model: str
    ) -> errors.ProviderError:
        """The kernel error for an HTTP error ``response`` whose ``body`` was read.
        Every adapter overrides this with its API's error body reader."""
        from llmkernel_http.errors import error_for_status, parse_retry_after

        text = snippet(body, 300)
        return error_for_status(
            response.status_code,
            f"HTTP {response.status_code}" + (f": {text}" if text else ""),
            provider=self.name,
            model=model,
            request_id=request_id_from(response.headers),
            retry_after=parse_retry_after(response.headers),
        )

    def error_for_transport(self, exc: Exception, model: str) -> errors.ProviderError:
        """The kernel error for a transport failure (refused, reset, timed out)."""
        return error_for_transport(exc, provider=self.name, model=model)

    def malformed(
        self, what: str, *, model: str, response: httpx.Response | None = None
    ) -> errors.MalformedResponseError:
        """The error for an answer that cannot be read; ``what`` says what was wrong."""
        return errors.MalformedResponseError(
            f"{self.type} answer was malformed: {what}",
            provider=self.name,
            model=model,
            status=response.status_code if response is not None else None,
            request_id=request_id_from(response.headers) if response is not None else None,
            headers=headers_of(response) if response is not None else None,
        )

    # ------------------------------------------------------------ the API calls

    async def send_chat(self, request: ChatRequest) -> Response:
        """One chat call, without timeout (the base applies it)."""
        raise NotImplementedError

    def stream_events(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        """A chat stream's events, as an ``async def`` generator, without timeouts.
        Start with :meth:`opened` once the response is open."""
        raise NotImplementedError

    async def send_embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """One embedding call, without timeout; the default refuses."""
        raise errors.InvalidRequestError(
            "this provider does not offer embeddings", provider=self.name, model=request.model
        )

    async def fetch_models(self) -> list[ModelInfo]:
        """The provider's model list, asked over the network."""
        return []

    async def probe(self) -> str:
        """The health check's request (cheap, and it checks the key); returns the
        detail to report. The default lists the models."""
        models = await self.fetch_models()
        return f"{len(models)} model{'' if len(models) == 1 else 's'} listed"

    # ------------------------------------------------------------ plumbing

    def client(self, model: str = "") -> httpx.AsyncClient:
        """The pooled client, built at the first request (when the key is read)."""
        if self._client is None:
            headers = self.default_headers()
            key = self.api_key(model)
            if key:
                headers.update(self.auth_headers(key))
            self._secrets = self._collect_secrets(key, headers)
            transport = self._transport or default_transport(self.settings)
            client = make_client(
                self.settings, base_url=self.base_url(), headers=headers, transport=transport
            )
            # With a transport of its own choosing (aiohttp's, or provide_transport's)
            # the provider hands requests to it directly: httpx's client layer adds
            # cookies, auth and redirect handling that no LLM API uses, and URL
            # merging per call; together they cost as much as the transport. With
            # httpx's own pool (http_client = "httpx"), requests go through the client.
            self._direct = transport
            self._base = str(client.base_url).rstrip("/") + "/"
            self._urls = {}
            self._extensions = {"timeout": client.timeout.as_dict()}
            # send_json skips httpx's Request and Response objects (about a tenth of
            # a call to a fast upstream) when nothing needs them: the kernel's own
            # transport, no query parameters, and no subclass reshaping send() or
            # read_body()
            cls = type(self)
            plain = (
                cls.send is HTTPProvider.send
                and cls.read_body is HTTPProvider.read_body
                and not self.query_params()
            )
            self._fast = transport if plain and type(transport) is AiohttpTransport else None
            self._per_request = cls.request_headers is not HTTPProvider.request_headers
            self._fast_headers = _Headers(client.headers.multi_items())
            self._fast_json_headers = _Headers(self._fast_headers)
            if "content-type" not in client.headers:
                self._fast_json_headers.append(("content-type", "application/json"))
            self._client = client
        return self._client

    def _collect_secrets(self, key: str | None, headers: Mapping[str, str]) -> Secrets:
        return collect_secrets(key, headers, self.settings.headers)

    def redact(self, text: str) -> str:
        """``text`` with every configured secret replaced by ``[redacted]``."""
        return redact(text, self._secrets)

    def scrub(self, error: errors.ProviderError) -> errors.ProviderError:
        """Remove secrets from ``error``'s message, code and headers, in place."""
        return scrub(error, self._secrets)

    async def request_headers(self, model: str) -> Mapping[str, str] | None:
        """Headers made for each request, on top of the client's (a bearer token
        that expires, fetched or refreshed here); ``None`` for none. Override it
        rather than :meth:`send`; secrets in them must be known to :meth:`redact`."""
        return None

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
        """Send a request; return the open (streaming) response when its status is
        2xx (the caller reads and closes it). An error status reads the body, closes
        the response and raises :meth:`error_for_response`'s error with the
        response headers; a transport failure raises :meth:`error_for_transport`'s."""
        client = self.client(model)
        if self._per_request:
            added = await self.request_headers(model)
            if added:
                headers = {**added, **(headers or {})}
        extra = headers_for(self.name)  # a plugin's, for this context (traceparent)
        if extra:
            headers = {**extra, **(headers or {})}
        extra = self.query_params()
        if extra:
            params = {**extra, **(params or {})}
        url = self._url(path)
        if headers:
            merged = client.headers.copy()
            merged.update(headers)
        request = httpx.Request(
            method,
            url,
            params=params,
            headers=merged if headers else client.headers,
            json=json,
            extensions=self._extensions,
        )
        try:
            if self._direct is not None:
                response = await self._direct.handle_async_request(request)
                response.request = request
            else:
                response = await client.send(request, stream=True)
        except httpx.RequestError as exc:
            raise self.error_for_transport(exc, model) from exc
        if response.is_success:
            return response
        raise self._failed(response, await self.read_body(response, model), model)

    def _url(self, path: str) -> httpx.URL:
        """The URL of ``path`` under the base URL, built once per path (a bounded
        number of them)."""
        url = self._urls.get(path)
        if url is None:
            url = httpx.URL(self._base + path.lstrip("/"))
            if len(self._urls) < _URL_CACHE_SIZE:
                self._urls[path] = url
        return url

    def _failed(self, response: httpx.Response, body: bytes, model: str) -> errors.ProviderError:
        """The error of an error answer: :meth:`error_for_response`'s, with the
        response headers, scrubbed."""
        error = self.error_for_response(response, body, model)
        error.headers = headers_of(response)
        return self.scrub(error)

    async def read_body(self, response: httpx.Response, model: str) -> bytes:
        """The whole body; the response is closed whatever happens."""
        try:
            return await response.aread()
        except httpx.RequestError as exc:
            raise self.error_for_transport(exc, model) from exc
        finally:
            await response.aclose()

    async def send_json(
        self,
        method: str,
        path: str,
        *,
        model: str,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> tuple[Any, httpx.Response]:
        """:meth:`send`, then read the whole body and decode its JSON: ``(data,
        response)`` (the response is closed). A body that is not JSON raises
        :meth:`malformed` with its start."""
        if self._client is None:
            self.client(model)
        if self._fast is not None and not params:
            response, body = await self._send_fast(method, path, model, json)
        else:
            response = await self.send(method, path, model=model, json=json, params=params)
            body = await self.read_body(response, model)
        try:
            return _loads(body), response
        except ValueError:
            raise self.malformed(
                f"HTTP {response.status_code} with a body that is not JSON: {snippet(body)!r}",
                model=model,
                response=response,
            ) from None

    async def _send_fast(
        self, method: str, path: str, model: str, json: Any
    ) -> tuple[httpx.Response, bytes]:
        """:meth:`send` then :meth:`read_body` through ``AiohttpTransport.exchange``
        (the kernel's own keep-alive connections), without httpx's request and client
        machinery; the same errors, the same
        ``httpx.Response`` (headers, status, decoded content) for the caller."""
        transport = self._fast
        assert transport is not None
        url = self._url(path)
        if json is None:
            content, headers = None, self._fast_headers
        else:
            content, headers = _dumps(json), self._fast_json_headers
        if self._per_request:
            added = await self.request_headers(model)
            if added:
                headers = _with(headers, added)
        extra = headers_for(self.name)  # a plugin's, for this context (traceparent)
        if extra:
            headers = _with(headers, extra)
        try:
            status, reason, raw, body = await transport.exchange(
                method, str(url), headers, content, self._extensions["timeout"]
            )
        except httpx.RequestError as exc:
            raise self.error_for_transport(exc, model) from exc
        response = httpx.Response(
            status,
            headers=raw,
            stream=httpx.ByteStream(body),
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": reason.encode("ascii", "replace"),
            },
        )
        if _identity(raw):
            # what read() would do for a body sent as it is, without its decoder
            # chain and stream checks (a fifth of this method's cost)
            content_read = response._content = body
            response.is_stream_consumed = response.is_closed = True
        else:
            try:
                content_read = response.read()  # decodes a compressed body, as httpx does
            except httpx.DecodingError as exc:
                raise self.error_for_transport(exc, model) from exc
        if response.is_success:
            return response, content_read
        response.request = httpx.Request(method, url, headers=headers, content=content)
        raise self._failed(response, content_read, model)

    def opened(self, response: httpx.Response) -> MetadataEvent:
        """The event a stream yields first: the response headers."""
        return MetadataEvent(headers=headers_of(response))

    def timed_out(self, model: str, what: str) -> errors.TimeoutError:
        return errors.TimeoutError(what, provider=self.name, model=model)

    # ------------------------------------------------------------ the Provider API

    async def _timed(self, awaitable: Awaitable[T], model: str, what: str) -> T:
        """``awaitable`` within ``timeout``: our own expiry becomes the kernel's
        ``TimeoutError`` (``no {what} within ...``); provider errors are scrubbed."""
        timeout = self.settings.timeout
        try:
            async with asyncio.timeout(timeout) as scope:
                return await awaitable
        except TimeoutError:
            if not scope.expired():
                raise
            raise self.timed_out(model, f"no {what} within timeout={timeout:g}s") from None
        except errors.ProviderError as exc:
            self.scrub(exc)
            raise

    async def chat(self, request: ChatRequest) -> Response:
        return await self._timed(self.send_chat(request), request.model, "complete answer")

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Events as they arrive. ``first_token_timeout`` bounds the wait for the
        first content event (text, reasoning or a tool call; not metadata or usage),
        ``timeout`` the whole stream; both apply to the reads only, never to the
        time the consumer spends between events (after a deadline passed, events
        already received are still delivered; a read that would wait fails).

        One timer per phase, not one per event: it cancels the read in progress when
        it fires, and does nothing while the consumer holds an event."""
        settings = self.settings
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        now = loop.time()
        deadline = now + settings.timeout
        first_wait: float | None = settings.first_token_timeout
        limit = deadline if first_wait is None else min(deadline, now + first_wait)
        reading = fired = False

        def expire(when: float) -> None:
            nonlocal fired
            if reading and not fired and when == limit:  # not a past phase's deadline
                fired = True
                task.cancel()

        timer = loop.call_at(limit, expire, limit)
        events = self.stream_events(request)
        try:
            while True:
                cancelling = task.cancelling()
                reading = True
                if loop.time() >= limit:  # passed while the consumer held the last event:
                    loop.call_soon(expire, limit)  # only a read that has to wait fails
                try:
                    event = await anext(events)
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    if fired and task.uncancel() <= cancelling:
                        raise self._stream_timeout(request, limit < deadline, first_wait) from None
                    raise
                except errors.ProviderError as exc:
                    self.scrub(exc)
                    raise
                finally:
                    reading = False
                if limit != deadline and isinstance(event, _CONTENT):
                    limit = deadline
                    timer.cancel()
                    timer = loop.call_at(limit, expire, limit)
                yield event
        finally:
            timer.cancel()
            await events.aclose()

    def _stream_timeout(
        self, request: ChatRequest, first: bool, first_wait: float | None
    ) -> errors.TimeoutError:
        if first:
            what = f"no first token within first_token_timeout={first_wait:g}s"
        else:
            what = f"the stream did not finish within timeout={self.settings.timeout:g}s"
        return self.timed_out(request.model, what)

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        return await self._timed(self.send_embed(request), request.model, "embeddings")

    async def list_models(self) -> list[ModelInfo]:
        timeout = self.settings.timeout
        try:
            async with asyncio.timeout(timeout) as scope:
                return await self.fetch_models()
        except TimeoutError:
            if not scope.expired():
                raise
            raise self.timed_out("", f"no model list within timeout={timeout:g}s") from None
        except errors.ProviderError as exc:
            self.scrub(exc)
            raise

    async def health(self) -> Health:
        """:meth:`probe` within ``timeout`` (at most 30 s). Never raises."""
        started = time.perf_counter()
        timeout = min(self.settings.timeout, HEALTH_TIMEOUT)
        try:
            async with asyncio.timeout(timeout):
                detail = await self.probe()
        except TimeoutError:
            return Health(
                ok=False,
                latency=time.perf_counter() - started,
                detail=f"no answer within {timeout:g}s",
            )
        except Exception as exc:  # a health check reports, never raises
            if isinstance(exc, errors.ProviderError):
                self.scrub(exc)
            return Health(
                ok=False,
                latency=time.perf_counter() - started,
                detail=self.redact(f"{type(exc).__name__}: {exc}"),
            )
        return Health(ok=True, latency=time.perf_counter() - started, detail=detail)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        self._direct = None
        if client is not None:
            await client.aclose()  # closes the transport too

    # ------------------------------------------------------------ helpers

    @staticmethod
    def with_headers(response: Response, http: httpx.Response) -> Response:
        """``response`` carrying ``http``'s headers."""
        return replace(response, headers=headers_of(http))


def _identity(raw: Sequence[tuple[bytes, bytes]]) -> bool:
    """Whether a response's raw headers leave its body as sent (no Content-Encoding)."""
    for name, _ in raw:  # noqa: SIM110  (a loop: no generator per call)
        if len(name) == 16 and name.lower() == b"content-encoding":
            return False
    return True


def _loads(body: bytes) -> Any:
    return json.loads(body)


_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _dumps(value: Any) -> bytes:
    """A JSON body as httpx's ``json=`` encodes it."""
    return _encoder.encode(value).encode("utf-8")


def _with(headers: _Headers, added: Mapping[str, str]) -> _Headers:
    """``headers`` with ``added`` replacing any of the same name."""
    names = {name.lower() for name in added}
    return _Headers([(k, v) for k, v in headers if k.lower() not in names] + list(added.items()))


class _Headers(list[tuple[str, str]]):
    """Request headers as sent (auth included): never shown in a repr."""

    def __repr__(self) -> str:
        return f"<{len(self)} headers>"
