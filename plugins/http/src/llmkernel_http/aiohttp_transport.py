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
"""

from __future__ import annotations

import atexit
import os
import ssl
import weakref
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    import aiohttp

    from llmkernel_http.connections import ConnectionPool

__all__ = ["AiohttpTransport", "aiohttp_available"]


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
    is how long an idle connection is kept. Both are created at their first request,
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
    ) -> None:
        self._max_connections = max_connections
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
        _LIVE.add(self)
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
    ) -> tuple[int, str, tuple[tuple[bytes, bytes], ...], bytes]:
        """One request, its answer read whole, without httpx's ``Request`` and
        ``Response`` objects (``HTTPProvider.send_json``'s fast path): the status, the
        reason, the raw headers and the body still encoded. ``url`` is sent as it
        is (already encoded); ``Host`` and ``Content-Length`` are added. Failures
        are raised as httpx's exceptions, as by :meth:`handle_async_request`.

        The exchange goes over the kernel's own keep-alive connections
        (:class:`~llmkernel_http.connections.ConnectionPool`), a third of aiohttp's
        cost; through aiohttp when a proxy is configured in the environment."""
        pool = self._pool
        if pool is None and not self._proxy():
            from llmkernel_http.connections import ConnectionPool

            pool = self._pool = ConnectionPool(
                max_connections=self._max_connections,
                keepalive_expiry=self._keepalive_expiry,
                ssl_context=self._ssl,
            )
        if pool is not None:
            return await pool.exchange(method, url, headers, content, timeouts)
        response = await self._request(method, url, headers, content, timeouts, None)
        try:
            body = await response.read()
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
            self._pool.close()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _abandon(self) -> None:
        """Close the pool's sockets without the event loop: for a transport
        dropped, or a process ending, without :meth:`aclose` (aiohttp would print
        "Unclosed client session" and "Unclosed connector" otherwise)."""
        session, self._session = self._session, None
        if session is None or session.closed:
            return
        connector = session.connector
        close = getattr(connector, "_close", None)  # synchronous; close() wants a loop
        if close is not None:
            try:
                close()
            except Exception:  # the loop may be closed or gone: nothing left to do
                return

    def __del__(self) -> None:
        self._abandon()


#: transports with an open session, closed quietly when the process ends
_LIVE: weakref.WeakSet[AiohttpTransport] = weakref.WeakSet()


@atexit.register
def _abandon_all() -> None:
    for transport in list(_LIVE):
        transport._abandon()


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
