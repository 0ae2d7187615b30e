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
  error; every error carries the response ``headers``; both apply :meth:`auth` (an
  ``httpx.Auth`` flow: signing, refreshed tokens) whatever the path;
* bounds on answers: ``max_response_bytes`` for a body read whole, before and after
  decoding, and one event of a stream (:mod:`llmkernel_http.body`), past which the
  answer is a :class:`~llmkernel.errors.MalformedResponseError`;
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
        def auth(self): ...                                  # optional: an httpx.Auth
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
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar

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
from llmkernel_http.aiohttp_transport import AiohttpTransport, Exchange
from llmkernel_http.body import UnreadableBody, decode, too_large
from llmkernel_http.client import default_transport, make_client
from llmkernel_http.errors import error_for_transport, request_id_from
from llmkernel_http.outgoing import headers_for
from llmkernel_http.redact import REDACTED, Secrets, collect_secrets, redact, scrub
from llmkernel_http.settings import HTTPSettings
from llmkernel_http.transport import read_raw
from llmkernel_http.wire import snippet

__all__ = ["REDACTED", "HTTPProvider", "headers_of"]

_CONTENT = (TextDelta, ReasoningDelta, ToolCallDelta)
#: Request URLs kept prebuilt per provider instance.
_URL_CACHE_SIZE = 256
#: The longest a health check waits.
HEALTH_TIMEOUT = 30.0


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
        self._lifecycle = config.lifecycle
        self._client: httpx.AsyncClient | None = None
        self._secrets: Secrets = Secrets()
        self._auth: httpx.Auth | None = None
        # prebuilt per client: URLs by path, the base URL, query parameters, timeouts
        self._base = ""
        self._urls: dict[str, httpx.URL] = {}
        self._query: dict[str, str] = {}
        self._timeouts: dict[str, float | None] = {}
        self._extensions: dict[str, Any] = {}
        # send_json's path on the default transport: AiohttpTransport.exchanger() (the
        # kernel's own connections, llmkernel_http.connections; aiohttp behind a proxy)
        self._transport_used: httpx.AsyncBaseTransport | None = None
        self._exchange: Exchange | None = None
        self._headers = _Headers()
        self._json_headers = _Headers()
        self._hooked = False  # exit and fork hooks registered with the kernel

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
        """Query parameters sent with every request (Azure's ``api-version``...);
        read once, when the client is built."""
        return {}

    def auth(self) -> httpx.Auth | None:
        """An ``httpx.Auth`` flow applied to every request, on every path (streams
        through httpx's client, answers read whole over the kernel's connections):
        a signature over the exact request (AWS SigV4), a bearer token fetched and
        refreshed per request. ``None`` (the default): :meth:`auth_headers` carry a
        static key. Built once, with the client; secrets it adds must be known to
        :meth:`redact`."""
        return None

    def error_for_response(
        self, response: httpx.Response, body: bytes, model: str
    ) -> errors.ProviderError:
        """The kernel error for an HTTP error ``response`` whose ``body`` was read.
        Every adapter overrides this with its API's error body reader, usually
        ending in :meth:`status_error`."""
        text = snippet(body, 300)
        return self.status_error(
            response, f"HTTP {response.status_code}" + (f": {text}" if text else ""), model=model
        )

    def status_error(
        self,
        response: httpx.Response,
        message: str,
        *,
        model: str,
        code: str | None = None,
        error_type: str | None = None,
    ) -> errors.ProviderError:
        """:func:`~llmkernel_http.error_for_status` for ``response``: its status, request
        id and ``Retry-After``, this provider's name, and the ``message``, ``code`` and
        ``error_type`` the API's error body gave."""
        from llmkernel_http.errors import error_for_status, parse_retry_after

        return error_for_status(
            response.status_code,
            message,
            provider=self.name,
            model=model,
            code=code,
            error_type=error_type,
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

    def declared_models(self) -> list[str]:
        """The models of the ``models`` key (for ``llmkernel models``)."""
        return list(self.settings.models)

    async def probe(self) -> str:
        """The health check's request (cheap, and it checks the key); returns the
        detail to report. The default lists the models."""
        models = await self.fetch_models()
        return f"{len(models)} model{'' if len(models) == 1 else 's'} listed"

    # ------------------------------------------------------------ plumbing

    def client(self, model: str = "") -> httpx.AsyncClient:
        """The pooled client, built at the first request (when the key is read)."""
        if self._client is None:
            settings = self.settings
            headers = self.default_headers()
            key = self.api_key(model)
            if key:
                headers.update(self.auth_headers(key))
            self._secrets = self._collect_secrets(key, headers)
            transport = self._transport or default_transport(settings)
            self._auth = self.auth()
            client = make_client(
                settings,
                base_url=self.base_url(),
                headers=headers,
                transport=transport,
                auth=self._auth,
            )
            self._base = str(client.base_url).rstrip("/") + "/"
            self._query = dict(self.query_params())
            self._urls = {}
            self._timeouts = client.timeout.as_dict()
            self._extensions = {"timeout": self._timeouts}
            # answers read whole go over AiohttpTransport.exchange (the kernel's own
            # connections) when the client is on it: the default; any other
            # transport (http_client = "httpx", provide_transport) gets them through
            # httpx's client, like streams
            self._transport_used = transport
            self._exchange = (
                transport.exchanger() if isinstance(transport, AiohttpTransport) else None
            )
            self._headers = _Headers(client.headers.multi_items())
            self._json_headers = _Headers(self._headers)
            if "content-type" not in client.headers:
                self._json_headers.append(("content-type", "application/json"))
            lifecycle = self._lifecycle
            if self._exchange is not None and lifecycle is not None and not self._hooked:
                self._hooked = True
                lifecycle.on_exit(self._abandon)
                lifecycle.on_fork(self._forget)
            self._client = client
        return self._client

    def _abandon(self) -> None:
        """The kernel's exit hook (a kernel never closed): close the connections."""
        transport = self._transport_used
        if self._client is not None and isinstance(transport, AiohttpTransport):
            transport.abandon()

    def _forget(self) -> None:
        """The kernel's fork hook: in the child, the connections are the parent's."""
        transport = self._transport_used
        if self._client is not None and isinstance(transport, AiohttpTransport):
            transport.forget()
        self._client = None

    def _collect_secrets(self, key: str | None, headers: Mapping[str, str]) -> Secrets:
        return collect_secrets(key, headers, self.settings.headers)

    def redact(self, text: str) -> str:
        """``text`` with every configured secret replaced by ``[redacted]``."""
        return redact(text, self._secrets)

    def scrub(self, error: errors.ProviderError) -> errors.ProviderError:
        """Remove secrets from ``error``'s message, code and headers, in place."""
        return scrub(error, self._secrets)

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
        """Send a request through the client (its :meth:`auth` flow included); return
        the open (streaming) response when its status is 2xx (the caller reads and
        closes it). ``path`` is relative to :meth:`base_url`, or a whole URL. An
        error status reads the body, closes the response and raises
        :meth:`error_for_response`'s error with the response headers; a transport
        failure raises :meth:`error_for_transport`'s."""
        client = self._client or self.client(model)
        sent = client.headers
        extra = headers_for(self.name)  # a plugin's, for this context (traceparent)
        if extra:
            headers = {**extra, **(headers or {})}
        if headers:
            sent = client.headers.copy()
            sent.update(headers)
        request = httpx.Request(
            method,
            self._url(path, params),
            headers=sent,
            json=json,
            extensions=self._extensions,
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.RequestError as exc:
            raise self.error_for_transport(exc, model) from exc
        if response.is_success:
            return response
        raise self._failed(*await self._whole(response, model), model)

    def _url(self, path: str, params: Mapping[str, Any] | None = None) -> httpx.URL:
        """The URL of ``path`` (under the base URL unless it is a whole URL) with
        :meth:`query_params` and ``params``; built once per path (a bounded number
        of them) when there are no ``params``."""
        url = self._urls.get(path)
        if url is None:
            url = httpx.URL(path if "://" in path else self._base + path.lstrip("/"))
            if self._query:
                url = url.copy_merge_params(self._query)
            if len(self._urls) < _URL_CACHE_SIZE:
                self._urls[path] = url
        return url.copy_merge_params(params) if params else url

    def _failed(self, response: httpx.Response, body: bytes, model: str) -> errors.ProviderError:
        """The error of an error answer, its body read whole (``body``, decoded):
        :meth:`error_for_response`'s, with the response headers, scrubbed. The
        response is read first, so the error reader may use ``response.text``."""
        response.read()  # within the bound: ``body`` is what it decodes to
        error = self.error_for_response(response, body, model)
        error.headers = headers_of(response)
        return self.scrub(error)

    async def read_body(self, response: httpx.Response, model: str) -> bytes:
        """The whole body, decoded, within ``max_response_bytes`` before and after
        decoding (past it: :meth:`malformed`); the response is closed whatever
        happens."""
        return (await self._whole(response, model))[1]

    async def _whole(self, response: httpx.Response, model: str) -> tuple[httpx.Response, bytes]:
        """``response`` read whole within bounds: the response (closed; its body can
        still be ``read()``) and the decoded body."""
        limit = self.settings.max_response_bytes
        refused: UnreadableBody | None = None
        if response.is_stream_consumed:  # read already (a transport that answers whole)
            await response.aclose()
            if len(response.content) > limit:
                refused = too_large("the answer's body", len(response.content), limit)
                raise self.malformed(str(refused), model=model, response=response)
            return response, response.content
        try:
            raw = await read_raw(response, limit)
        except httpx.RequestError as exc:
            raise self.error_for_transport(exc, model) from exc
        except UnreadableBody as exc:
            refused = exc
        finally:
            await response.aclose()
        if refused is not None:
            raise self.malformed(str(refused), model=model, response=response)
        whole = httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=httpx.ByteStream(raw),
            request=response.request,
            extensions=response.extensions,
        )
        encoding = whole.headers.get("content-encoding")
        return whole, self._decoded(whole, raw, encoding, model)

    def _decoded(
        self, response: httpx.Response, raw: bytes, encoding: str | None, model: str
    ) -> bytes:
        """``raw`` (a body as sent) decoded by ``encoding`` (the response's
        ``Content-Encoding``) within ``max_response_bytes``
        (:func:`~llmkernel_http.body.decode`)."""
        if not encoding:
            return raw
        try:
            return decode(raw, encoding, self.settings.max_response_bytes)
        except UnreadableBody as exc:
            problem = str(exc)
        raise self.malformed(problem, model=model, response=response)

    async def send_json(
        self,
        method: str,
        path: str,
        *,
        model: str,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> tuple[Any, httpx.Response]:
        """Send a request, read the whole answer and decode its JSON: ``(data,
        response)``, the response closed, with its status and headers (its body was
        read into ``data``; ``response.read()`` gives the bytes). The same errors as :meth:`send`;
        a body that is not JSON, or over ``max_response_bytes`` (before or after
        decoding), raises :meth:`malformed`. The request goes through
        :meth:`auth`'s flow on every transport; on the default one
        (:class:`~llmkernel_http.AiohttpTransport`) over the kernel's own
        connections, without httpx's client machinery."""
        client = self._client or self.client(model)
        url = self._url(path, params)
        if self._exchange is not None:
            response, body = await self._exchanged(method, url, json, model)
        else:
            sent = client.headers
            extra = headers_for(self.name)  # a plugin's, for this context (traceparent)
            if extra:
                sent = sent.copy()
                sent.update(extra)
            request = httpx.Request(
                method, url, headers=sent, json=json, extensions=self._extensions
            )
            try:
                opened = await client.send(request, stream=True)
            except httpx.RequestError as exc:
                raise self.error_for_transport(exc, model) from exc
            response, body = await self._whole(opened, model)
            if not response.is_success:
                raise self._failed(response, body, model)
        try:
            data = _loads(body)
        except ValueError:  # the error is raised outside: nothing of the body chained
            data = _NOT_JSON
        if data is _NOT_JSON:
            raise self.malformed(
                f"HTTP {response.status_code} with a body that is not JSON: {snippet(body)!r}",
                model=model,
                response=response,
            )
        return data, response

    async def _exchanged(
        self, method: str, url: httpx.URL, json: Any, model: str
    ) -> tuple[httpx.Response, bytes]:
        """:meth:`send_json`'s request over the transport's whole-body exchange (the
        kernel's own connections): the auth flow applied to an ``httpx.Request``
        when there is one; the answer (an ``httpx.Response`` with its body not read
        into it) and its body decoded (:meth:`_decoded`)."""
        content = None if json is None else _dumps(json)
        headers: Sequence[tuple[str, str]] = (
            self._headers if content is None else self._json_headers
        )
        extra = headers_for(self.name)  # a plugin's, for this context (traceparent)
        if extra:
            headers = _with(_Headers(headers), extra)
        request = flow = None
        if self._auth is not None:
            request = httpx.Request(method, url, headers=headers, content=content)
            flow = self._auth.async_auth_flow(request)
            request = await anext(flow)
        limit = self.settings.max_response_bytes
        exchange = self._exchange
        assert exchange is not None
        try:
            while True:
                if request is not None:  # the flow's request, exactly as it is sent
                    headers = [
                        (k, v)
                        for k, v in request.headers.multi_items()
                        if k not in ("host", "content-length")
                    ]
                    url, content = request.url, request.content or None
                refused = None
                try:
                    status, reason, raw, body = await exchange(
                        method, str(url), headers, content, self._timeouts, max_body=limit
                    )
                except httpx.RequestError as exc:
                    raise self.error_for_transport(exc, model) from exc
                except UnreadableBody as exc:
                    refused = str(exc)
                if refused is not None:
                    raise self.malformed(refused, model=model)
                response = httpx.Response(
                    status,
                    headers=raw,
                    stream=httpx.ByteStream(body),
                    extensions={
                        "http_version": b"HTTP/1.1",
                        "reason_phrase": reason.encode("ascii", "replace"),
                    },
                )
                decoded = self._decoded(response, body, _content_encoding(raw), model)
                if flow is None:
                    break
                try:  # a flow of several requests (a challenge) asks for the next
                    request = await flow.asend(response)
                except StopAsyncIteration:
                    break
        finally:
            if flow is not None:
                await flow.aclose()
        if response.is_success:
            return response, decoded
        response.request = request or httpx.Request(method, url, headers=headers, content=content)
        raise self._failed(response, decoded, model)

    async def stream_text(self, response: httpx.Response, model: str) -> AsyncIterator[str]:
        """A streamed body's text as it arrives (``response.aiter_text()``); a cut or
        reset connection raises :meth:`error_for_transport`'s (retryable) error."""
        try:
            async for text in response.aiter_text():
                yield text
        except httpx.HTTPError as exc:
            raise self.error_for_transport(exc, model) from exc

    def opened(self, response: httpx.Response) -> MetadataEvent:
        """The event a stream yields first: the response headers."""
        return MetadataEvent(headers=headers_of(response))

    def timed_out(self, model: str, what: str) -> errors.TimeoutError:
        return errors.TimeoutError(what, provider=self.name, model=model)

    # ------------------------------------------------------------ the Provider API

    async def chat(self, request: ChatRequest) -> Response:
        async with _Deadline(self, request.model, "complete answer"):
            return await self.send_chat(request)

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
        refused: str | None = None
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
                except UnreadableBody as exc:  # an event over its bound
                    refused = str(exc)
                finally:
                    reading = False
                if refused is not None:
                    raise self.malformed(refused, model=request.model)
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
        async with _Deadline(self, request.model, "embeddings"):
            return await self.send_embed(request)

    async def list_models(self) -> list[ModelInfo]:
        async with _Deadline(self, "", "model list"):
            return await self.fetch_models()

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
        if client is not None:
            await client.aclose()  # closes the transport too

    # ------------------------------------------------------------ helpers

    @staticmethod
    def with_headers(response: Response, http: httpx.Response) -> Response:
        """``response`` carrying ``http``'s headers."""
        return replace(response, headers=headers_of(http))


class _Deadline:
    """``timeout`` around a call (:meth:`HTTPProvider.chat`, ``embed``,
    ``list_models``): its expiry becomes the kernel's ``TimeoutError`` (``no {what}
    within ...``); provider errors leaving it are scrubbed. A context manager rather
    than a wrapper coroutine: no frame of its own under the call."""

    __slots__ = ("model", "provider", "scope", "what")

    def __init__(self, provider: HTTPProvider, model: str, what: str) -> None:
        self.provider = provider
        self.model = model
        self.what = what
        self.scope = asyncio.timeout(provider.settings.timeout)

    async def __aenter__(self) -> None:
        await self.scope.__aenter__()

    async def __aexit__(self, kind: Any, exc: BaseException | None, traceback: Any) -> None:
        try:
            await self.scope.__aexit__(kind, exc, traceback)
        except TimeoutError:
            if not self.scope.expired():  # pragma: no cover - raised by the scope only
                raise
            timeout = self.provider.settings.timeout
            what = f"no {self.what} within timeout={timeout:g}s"
            raise self.provider.timed_out(self.model, what) from None
        if isinstance(exc, errors.ProviderError):
            self.provider.scrub(exc)


def _content_encoding(raw: Sequence[tuple[bytes, bytes]]) -> str | None:
    """The ``Content-Encoding`` of raw headers (a loop: cheaper than httpx's lookup)."""
    for name, value in raw:
        if len(name) == 16 and name.lower() == b"content-encoding":
            return value.decode("latin-1")
    return None


#: what send_json's JSON decoding gives for a body that is not JSON
_NOT_JSON = object()


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
