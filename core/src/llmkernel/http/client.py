"""Building the one pooled httpx client each provider instance reuses."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from llmkernel.http.settings import HTTPSettings


def make_client(
    settings: HTTPSettings,
    *,
    base_url: str,
    headers: Mapping[str, str],
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An ``AsyncClient`` sized for real concurrency.

    httpx's default pool (100 connections, 20 kept alive) collapses under load; the
    limits here come from the settings. ``transport`` swaps the network layer (the
    gateway can pass an aiohttp-backed one) without touching the adapter.
    """
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
        headers={**headers, **settings.headers},
        timeout=timeout,
        limits=limits,
        transport=transport,
        follow_redirects=False,
    )
