"""An httpx transport over aiohttp: httpx's API for the providers, aiohttp's
connection pool underneath.

httpx's own async pool (httpcore) re-scans every connection on each request; at 50
concurrent callers on one core it spent 75% of the time there (docs/performance.md).
aiohttp's pool does not, so this transport is the default for every provider client
built by :func:`llmkernel_http.make_client`. Responses stream: each chunk is handed
to httpx as soon as it arrives. :meth:`AiohttpTransport.exchange` (answers read
whole) goes over the kernel's own keep-alive connections instead
(:mod:`llmkernel_http.connections`), unless a proxy is configured.

aiohttp is imported when the first client is built, never by ``import llmkernel``.
Failures are raised as httpx's exceptions (connect errors, read errors, timeouts), so
provider code sees the same errors as on httpx's own transport.

Closing is :meth:`AiohttpTransport.aclose`. For a kernel never closed, the provider
registers :meth:`AiohttpTransport.abandon` with the kernel's lifecycle (an exit hook)
and :meth:`AiohttpTransport.forget` for a forked child; the transport registers
nothing itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    import aiohttp

    from llmkernel_http.connections import ConnectionPool

from llmkernel_http.body import MAX_RESPONSE_BYTES, UnreadableBody, too_large

__all__ = ["AiohttpTransport", "Exchange", "aiohttp_available"]

#: ``exchange(method, url, headers, content, timeouts, *, max_body=None)``: one
#: request, its answer read whole (:meth:`AiohttpTransport.exchange`).
Exchange = Callable[..., Awaitable[tuple[int, str, tuple[tuple[bytes, bytes], ...], bytes]]]


def aiohttp_available() -> bool:
    """Whether aiohttp can be imported (it is a dependency, but may be removed)."""
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return False
    return True


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` sending through one ``aiohttp.ClientSession``,
    and :meth:`exchange` (answers read whole) through the kernel's own
    :class:`~llmkernel_http.connections.ConnectionPool`.

    ``max_connections`` bounds each of the two pools (0: no bound), ``keepalive_expiry``
    is how long an idle connection is kept, ``max_body`` is the default bound on a
    body :meth:`exchange` reads. Both are created at their first request,
    on the running loop, and closed by :meth:`aclose`. Whether a proxy is configured
    in the environment is read once, at the first request. Redirects are never
    followed and bodies are handed to httpx still encoded (httpx decodes them).
    """

    def __init__(
        self,
        *,
        max_connections: int = 512,
        keepalive_expiry: float = 30.0,
        verify: bool | ssl.SSLContext = True,
        max_body: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self._max_connections = max_connections
        self._max_body = max_body
        self._loop: asyncio.AbstractEventLoop | None = None  # the session's
        self._keepalive_expiry = keepalive_expiry
        self._verify = verify
        self._session: aiohttp.ClientSession | None = None
        self._context: bool | ssl.SSLContext | None = None
        self._pool: ConnectionPool | None = None
        self._proxied: bool | None = None  # HTTP(S)_PROXY/ALL_PROXY set: aiohttp only

    def _ssl(self) -> bool | ssl.SSLContext:
        """The TLS context, made at the first https request: httpx's (certifi's
        bundle), the same trust as httpx's own transport."""
        if self._context is None:
            verify = self._verify
            self._context = httpx.create_ssl_context() if verify is True else verify
        return self._context

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp

        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            limit_per_host=0,
            keepalive_timeout=self._keepalive_expiry,
            ttl_dns_cache=300,
        )
        self._loop = asyncio.get_running_loop()
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),  # httpx keeps the cookies
            auto_decompress=False,  # httpx decodes
            timeout=aiohttp.ClientTimeout(total=None),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
            # proxies from HTTP(S)_PROXY/NO_PROXY, as httpx does, when any is set
            trust_env=self._proxy(),
        )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        data: Any
        try:
            data = request.content or None
        except httpx.RequestNotRead:
            data = _stream_body(request)
            request.headers.pop("transfer-encoding", None)  # aiohttp chunks it itself
        response = await self._request(
            request.method, str(request.url), request.headers.multi_items(), data, timeouts, request
        )
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_ResponseBody(response, request),
            request=request,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode("ascii", "replace"),
            },
        )

    async def exchange(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        content: bytes | None,
        timeouts: Mapping[str, float | None],
        *,
        max_body: int | None = None,
    ) -> tuple[int, str, tuple[tuple[bytes, bytes], ...], bytes]:
        """One request, its answer read whole, without httpx's ``Request`` and
        ``Response`` objects (``HTTPProvider.send_json``'s fast path): the status, the
        reason, the raw headers and the body still encoded. ``url`` is sent as it
        is (already encoded); ``Host`` and ``Content-Length`` are added. Failures
        are raised as httpx's exceptions, as by :meth:`handle_async_request`; a
        body over ``max_body`` bytes (default: the transport's) as
        :class:`~llmkernel_http.body.UnreadableBody`.

        The exchange goes over the kernel's own keep-alive connections
        (:class:`~llmkernel_http.connections.ConnectionPool`), a third of aiohttp's
        cost; through aiohttp when a proxy is configured in the environment."""
        return await self.exchanger()(method, url, headers, content, timeouts, max_body=max_body)

    def exchanger(self) -> Exchange:
        """The callable :meth:`exchange` hands requests to, for a caller that sends
        many (``HTTPProvider`` asks once per client): the kernel's connection pool's
        ``exchange``, or aiohttp's client when a proxy is configured. Valid until
        :meth:`forget`."""
        if self._proxy():
            return self._through_aiohttp
        pool = self._pool
        if pool is None:
            from llmkernel_http.connections import ConnectionPool

            pool = self._pool = ConnectionPool(
                max_connections=self._max_connections,
                keepalive_expiry=self._keepalive_expiry,
                ssl_context=self._ssl,
                max_body=self._max_body,
            )
        return pool.exchange

    async def _through_aiohttp(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        content: bytes | None,
        timeouts: Mapping[str, float | None],
        *,
        max_body: int | None = None,
    ) -> tuple[int, str, tuple[tuple[bytes, bytes], ...], bytes]:
        limit = self._max_body if max_body is None else max_body
        response = await self._request(method, url, headers, content, timeouts, None)
        try:
            body = await _read_within(response, limit)
        except UnreadableBody:
            response.close()
            raise
        except Exception as exc:
            raise _mapped(exc, None, connecting=False) from exc
        finally:
            response.release()  # back to the pool when read whole, closed otherwise
        return response.status, response.reason or "", response.raw_headers, body

    def _proxy(self) -> bool:
        if self._proxied is None:
            self._proxied = _proxy_env()
        return self._proxied

    async def _request(
        self,
        method: str,
        url: str,
        headers: Any,
        data: Any,
        timeouts: Mapping[str, float | None],
        request: httpx.Request | None,
    ) -> aiohttp.ClientResponse:
        """aiohttp's request, its failure raised as httpx's exception."""
        import yarl

        session = self._session if self._session is not None else self._open()
        try:
            return await session.request(
                method,
                # exactly as httpx encoded it: a signed path (AWS SigV4) must not
                # be re-quoted or unquoted on the way out
                yarl.URL(url, encoded=True),
                headers=headers,
                data=data,
                allow_redirects=False,
                ssl=self._ssl() if url.startswith("https:") else True,
                timeout=_client_timeout(timeouts),
            )
        except Exception as exc:
            raise _mapped(exc, request, connecting=True) from exc

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool.close()  # it opens new connections if used again
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def abandon(self) -> None:
        """Close the connections from outside the event loop: the kernel's exit hook
        when a script never closed its kernel (aiohttp would print "Unclosed client
        session" otherwise). Runs :meth:`aclose` on the session's loop when it is
        idle, hands it to the loop when another thread runs it (waiting at most a
        second), or, when that loop is closed, on a loop of its own (aiohttp then
        only marks its pool closed: sockets of a closed loop cannot be closed)."""
        loop = self._loop if self._session is not None else None
        if loop is None and self._pool is not None:
            loop = self._pool.loop
        if loop is None:
            return
        with contextlib.suppress(Exception):  # at exit: nothing more to do about it
            if loop.is_closed():
                asyncio.run(self._let_go())
            elif loop.is_running():
                done = asyncio.run_coroutine_threadsafe(self._let_go(), loop)
                with contextlib.suppress(concurrent.futures.TimeoutError):
                    done.result(timeout=1.0)
            else:
                loop.run_until_complete(self._let_go())

    async def _let_go(self) -> None:
        await self.aclose()
        await asyncio.sleep(0)  # the transports' closing callbacks run

    def forget(self) -> None:
        """In a child made by ``os.fork``: the connections are the parent's; drop them
        without closing them (a TLS close would write on the parent's sockets). They
        are kept referenced (:data:`INHERITED`) so that collecting them closes
        nothing either; the next request opens new ones."""
        for held in (self._session, self._pool):
            if held is not None:
                INHERITED.append(held)
        self._session = self._pool = self._loop = None


#: a forked child's inherited sessions and pools, never closed or collected there
INHERITED: list[object] = []


class _ResponseBody(httpx.AsyncByteStream):
    """The body as aiohttp receives it, chunk by chunk."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except Exception as exc:
            raise _mapped(exc, self._request, connecting=False) from exc

    async def aclose(self) -> None:
        # back to the pool when read to its end, closed otherwise
        self._response.release()


async def _read_within(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, refused past ``limit`` bytes (a ``Content-Length`` over it
    before anything is read)."""
    length = response.content_length
    if length is not None and length > limit:
        raise too_large("the answer's Content-Length", length, limit)
    parts: list[bytes] = []
    size = 0
    async for part in response.content.iter_any():
        size += len(part)
        if size > limit:
            raise too_large("the answer's body", f"more than {limit}", limit)
        parts.append(part)
    return b"".join(parts)


def _proxy_env() -> bool:
    names = ("http_proxy", "https_proxy", "all_proxy")
    return any(os.environ.get(n) or os.environ.get(n.upper()) for n in names)


async def _stream_body(request: httpx.Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream:  # type: ignore[union-attr]
        yield chunk


def _mapped(exc: Exception, request: httpx.Request | None, *, connecting: bool) -> Exception:
    """httpx's exception for an aiohttp (or asyncio) failure; others unchanged."""
    import asyncio

    import aiohttp

    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        if isinstance(exc, asyncio.CancelledError):  # pragma: no cover - not a subclass
            return exc
        return httpx.ReadTimeout(message, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message, request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(message, request=request)
    if isinstance(exc, aiohttp.ClientError | OSError):
        if connecting:
            return httpx.ConnectError(message, request=request)
        return httpx.ReadError(message, request=request)
    return exc


def _client_timeout(timeouts: Mapping[str, float | None]) -> aiohttp.ClientTimeout:
    """httpx's timeouts (``connect``, ``read``, ``pool``) as aiohttp's: waiting for a
    pooled connection counts against ``connect``, no bound on the whole exchange."""
    import aiohttp

    connect, pool = timeouts.get("connect"), timeouts.get("pool")
    return aiohttp.ClientTimeout(
        total=None,
        connect=None if pool is None or connect is None else pool + connect,
        sock_connect=connect,
        sock_read=timeouts.get("read"),
    )
