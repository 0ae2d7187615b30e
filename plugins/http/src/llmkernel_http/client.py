"""Building the one pooled httpx client each provider instance reuses."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from llmkernel_http.body import ACCEPT_ENCODING
from llmkernel_http.settings import HTTPSettings

__all__ = ["default_transport", "make_client"]


def default_transport(settings: HTTPSettings) -> httpx.AsyncBaseTransport | None:
    """The transport a provider client gets when ``provide_transport`` gives none:
    :class:`~llmkernel_http.aiohttp_transport.AiohttpTransport` (``http_client =
    "aiohttp"``, the default, when aiohttp is installed), else ``None`` for httpx's
    own pool (``http_client = "httpx"``)."""
    if settings.http_client == "aiohttp":
        from llmkernel_http.aiohttp_transport import AiohttpTransport, aiohttp_available

        if aiohttp_available():
            return AiohttpTransport(
                max_connections=settings.max_connections, max_body=settings.max_response_bytes
            )
    return None


def make_client(
    settings: HTTPSettings,
    *,
    base_url: str,
    headers: Mapping[str, str],
    transport: httpx.AsyncBaseTransport | None = None,
    auth: httpx.Auth | None = None,
) -> httpx.AsyncClient:
    """An ``AsyncClient`` sized for real concurrency.

    The network layer is ``transport`` when given (from the ``provide_transport``
    hook), else :func:`default_transport`: aiohttp's pool, which holds up under
    concurrency where httpx's own does not. With ``http_client = "httpx"`` httpx's
    pool is used, sized by the settings (its default of 100 connections, 20 kept
    alive, collapses under load). ``auth`` (an ``httpx.Auth``) applies to every
    request. ``Accept-Encoding`` asks for the codings whose decoded size the kernel
    can bound (:mod:`llmkernel_http.body`).
    """
    if transport is None:
        transport = default_transport(settings)
    limits = httpx.Limits(
        max_connections=settings.max_connections,
        max_keepalive_connections=settings.max_keepalive_connections,
        keepalive_expiry=30.0,
    )
    timeout = httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.read_timeout,
        write=settings.read_timeout,
        pool=settings.connect_timeout,
    )
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"accept-encoding": ACCEPT_ENCODING, **headers, **settings.headers},
        auth=auth,
        timeout=timeout,
        limits=limits,
        transport=transport,
        follow_redirects=False,
    )
