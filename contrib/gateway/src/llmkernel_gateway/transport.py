"""The providers' HTTP transport inside the gateway.

The kernel's own default (``llmkernel_http.AiohttpTransport``: aiohttp's connector,
requests handed straight to it) holds up under concurrency, so ``transport =
"aiohttp"`` (the default) adds nothing. ``transport = "httpx"`` puts every provider
on httpx's own pool instead, through ``provide_transport``, registered in the
gateway's kernel only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel import hookimpl

if TYPE_CHECKING:
    import httpx


class HttpxTransportPlugin:
    """Registered by :class:`~llmkernel_gateway.app.Gateway` for ``transport = "httpx"``."""

    __llmkernel_name__ = "gateway-transport"

    @hookimpl
    def provide_transport(self, provider: str) -> httpx.AsyncBaseTransport:
        import httpx

        return httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=1024))


__all__ = ["HttpxTransportPlugin"]
