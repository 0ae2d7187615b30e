"""Local-first: local providers (Ollama, vLLM, LM Studio, llama.cpp on this machine
or network) first, cloud after; within each, config order.

A local candidate goes after the cloud ones when it is unhealthy (breaker not
closed, a failed active health check, or a failure in the last
``failure_cooldown`` seconds and no success since, as llmkernel-routing sees
it), when it lacks a capability the request needs, or when its context window
cannot hold the prompt. (llmkernel-routing's filters drop those
last two before any strategy; local-first checks again so it still holds when the
filters are off.)

A candidate is local when its ``[models]`` target says ``local = true`` (or
``false``), else when its provider instance is listed in ``providers``, else when
its provider type is in ``types`` (``ollama``), else when its provider's base URL
points at localhost, a loopback, private or link-local address, or a ``.local``
name.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import attrs

from llmkernel.options import parse_options
from llmkernel_routing import Routing, missing, request_needs, routing_for

NAME = "local-first"


@attrs.frozen(kw_only=True)
class LocalFirstSettings:
    providers: list[str] = attrs.field(factory=list)  # instances that are local
    types: list[str] = attrs.field(factory=lambda: ["ollama"])  # provider types that are
    detect: bool = True  # judge by the provider's base URL
    #: Move an unhealthy local candidate after the cloud ones...
    health: bool = True
    #: ...and count a failure of it for this many seconds (then try it first again).
    failure_cooldown: float = 30.0


def is_local_url(url: str) -> bool:
    """Whether ``url`` points at this machine or a private network."""
    host = (urlsplit(url).hostname or "").lower()
    if not host:
        return False
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


@attrs.define(kw_only=True, eq=False)
class LocalFirst:
    """The ``local-first`` strategy."""

    kernel: Any
    routing: Routing
    settings: LocalFirstSettings = attrs.field(factory=LocalFirstSettings)
    _local: dict[str, bool] = attrs.field(factory=dict)

    def is_local(self, candidate: Any) -> bool:
        tags: Mapping[str, Any] = getattr(candidate, "tags", None) or {}
        if "local" in tags:
            return bool(tags["local"])
        name = candidate.provider
        known = self._local.get(name)
        if known is not None:
            return known
        local = name in self.settings.providers or candidate.provider_type in self.settings.types
        if not local and self.settings.detect:
            local = is_local_url(_base_url(self.kernel, name))
        self._local[name] = local
        return local

    def usable(self, ctx: Any, candidate: Any) -> bool:
        settings = self.settings
        if settings.health and not self.routing.healthy(candidate, settings.failure_cooldown):
            return False
        request = getattr(ctx, "request", None)
        needed = request_needs(request)
        try:
            capabilities = self.kernel.provider(candidate.provider).capabilities(candidate.model)
        except Exception:
            capabilities = None
        if missing(capabilities, needed):
            return False
        window = capabilities.context_window if capabilities is not None else None
        if window and request is not None and hasattr(ctx, "input_tokens"):
            output = getattr(request, "max_tokens", None) or 0
            if ctx.input_tokens(candidate) + output > window:
                return False
        return True

    def select(self, ctx: Any, candidates: Sequence[Any]) -> list[Any]:
        local, cloud, fallen = [], [], []
        for candidate in candidates:
            if not self.is_local(candidate):
                cloud.append(candidate)
            elif self.usable(ctx, candidate):
                local.append(candidate)
            else:
                fallen.append(candidate)
        return local + cloud + fallen


def _base_url(kernel: Any, name: str) -> str:
    try:
        provider = kernel.provider(name)
    except Exception:
        return ""
    url = getattr(provider, "base_url", None) or getattr(
        getattr(provider, "settings", None), "base_url", None
    )
    return url if isinstance(url, str) else ""


def make(kernel: Any, settings: Mapping[str, Any]) -> LocalFirst:
    parsed = parse_options(LocalFirstSettings, settings, where=f"[routing.{NAME}]")
    return LocalFirst(kernel=kernel, routing=routing_for(kernel), settings=parsed)


__all__ = ["NAME", "LocalFirst", "LocalFirstSettings", "is_local_url", "make"]
