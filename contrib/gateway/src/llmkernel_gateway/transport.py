"""Providers on aiohttp inside the gateway.

httpx's own async pool loses most of its throughput at 50 concurrent requests
(docs/performance.md); aiohttp's connector does not. The kernel lets a plugin choose
each provider's transport (``provide_transport``): the gateway registers this plugin
in its own kernel only, so the library elsewhere keeps httpx's default. All
providers share one ``aiohttp.ClientSession`` (one connection pool), created on the
serving loop the first time a provider is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmkernel import hookimpl

if TYPE_CHECKING:
    import httpx

# Generous: the gateway multiplexes many clients onto few upstreams.
CONNECTIONS = 1024
KEEPALIVE_SECONDS = 30.0


class TransportPlugin:
    """Registered by :class:`~llmkernel_gateway.app.Gateway` in its kernel."""

    __llmkernel_name__ = "gateway-transport"

    def __init__(self) -> None:
        self._session: Any = None

    def _get_session(self) -> Any:
        import aiohttp
        import httpx

        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=CONNECTIONS,
                keepalive_timeout=KEEPALIVE_SECONDS,
                ssl=httpx.create_ssl_context(),
                ttl_dns_cache=300,
            )
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self._session

    @hookimpl
    def provide_transport(self, provider: str) -> httpx.AsyncBaseTransport:
        from httpx_aiohttp import AiohttpTransport

        return AiohttpTransport(client=self._get_session)


__all__ = ["TransportPlugin"]
