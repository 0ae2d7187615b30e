"""The cache key: a canonical form of everything that changes the answer.

Covered: the model as requested, messages (text, images, tool calls and results,
thinking and its signatures), tools, tool choice, response format, temperature,
top_p, max tokens, stop sequences, reasoning settings and provider options (seed
and the rest). Not covered: ``user`` (an end-user id for abuse tracking),
``metadata`` (who is asking: only its tenant picks the namespace), the cache's own
per-request options, and any option whose name marks a secret or headers.

The canonical form keeps the order of everything whose order can change the answer
(messages, tools, the properties of a JSON schema, stop sequences) and sorts only
the top-level provider options, whose order does not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import attrs

from llmkernel.types import ChatRequest

__all__ = [
    "CACHE_OPTION",
    "NAMESPACE_OPTION",
    "REQUEST_OPTIONS",
    "TTL_OPTION",
    "canonical",
    "is_secret_name",
    "namespace_for",
    "request_key",
]

CACHE_OPTION = "cache"  # options={"cache": False}: neither read nor write
TTL_OPTION = "cache_ttl"  # options={"cache_ttl": 60}: keep this answer 60 s
NAMESPACE_OPTION = "cache_namespace"  # options={"cache_namespace": "x"}: explicit namespace
REQUEST_OPTIONS = frozenset({CACHE_OPTION, TTL_OPTION, NAMESPACE_OPTION})

_SECRET_SUFFIXES = (
    "api_key",
    "apikey",
    "secret",
    "password",
    "passwd",
    "authorization",
    "access_token",
    "auth_token",
    "bearer_token",
    "session_token",
    "credentials",
    "credential",
    "headers",
    "cookie",
    "cookies",
)


def is_secret_name(name: str) -> bool:
    """Whether an option's name marks a secret (``api_key``, ``x_api_key``,
    ``extra_headers``, ...); such options never enter the key."""
    lowered = name.lower().replace("-", "_")
    return lowered.endswith(_SECRET_SUFFIXES) or lowered in {"key", "token", "auth"}


def namespace_for(request: ChatRequest, mode: str) -> str:
    """The namespace of a request: the explicit option, else its tenant when
    ``mode`` is ``"tenant"``, else ``"shared"``. A request with no tenant is in
    ``"default"``."""
    explicit = request.options.get(NAMESPACE_OPTION) or request.metadata.get(NAMESPACE_OPTION)
    if explicit:
        return str(explicit)
    if mode == "tenant":
        return str(request.metadata.get("tenant") or "default")
    return "shared"


def _plain(value: Any) -> Any:
    """attrs values to JSON-ready data, keeping the order of mappings."""
    if attrs.has(type(value)):
        return {f.name: _plain(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return value  # 0.0 stays a float; ints are normalized below
    return value


def _number(value: float | None) -> float | None:
    return None if value is None else float(value)


def canonical(request: ChatRequest) -> str:
    """The canonical JSON text of what changes ``request``'s answer."""
    options = {
        k: _plain(v)
        for k, v in sorted(request.options.items())
        if k not in REQUEST_OPTIONS and not is_secret_name(k)
    }
    data = [
        request.model,
        _plain(request.messages),
        _plain(request.tools),
        _plain(request.tool_choice),
        _plain(request.response_format),
        _number(request.temperature),
        _number(request.top_p),
        request.max_tokens,
        list(request.stop),
        _plain(request.reasoning),
        options,
    ]
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=repr)


def request_key(request: ChatRequest, namespace: str) -> str:
    """The key of ``request`` in ``namespace``: a SHA-256 hex digest."""
    digest = hashlib.sha256(namespace.encode())
    digest.update(b"\0")
    digest.update(canonical(request).encode())
    return digest.hexdigest()
