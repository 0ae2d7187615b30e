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
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from llmkernel.types import ChatRequest, ImagePart, Message, Part, ReasoningPart, TextPart
from llmkernel_cache.settings import CACHE_OPTION, NAMESPACE_OPTION, REQUEST_OPTIONS, TTL_OPTION

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


def _default(value: Any) -> Any:
    """JSON for what ``json`` does not know: mappings, attrs values, else the repr
    (unique per value, so never a false hit; at worst a miss)."""
    if isinstance(value, Mapping):
        return dict(value)
    if attrs.has(type(value)):
        return attrs.asdict(value, recurse=False)
    return repr(value)


# one encoder, made once: json.dumps with options builds a new one every call
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_default)
# how that encoder writes a string (ensure_ascii=False)
_string: Callable[[str], str] = json.encoder.encode_basestring


def _part(part: Part) -> list[Any]:
    if isinstance(part, TextPart):
        return ["t", part.text]
    if isinstance(part, ImagePart):
        return ["i", part.url, part.data, part.media_type, part.detail]
    if isinstance(part, ReasoningPart):
        return ["r", part.text, part.signature, part.redacted]
    return ["?", repr(part)]


def _message(m: Message) -> list[Any]:
    return [
        m.role,
        [_part(p) for p in m.content],
        [[c.id, c.name, c.arguments, c.signature] for c in m.tool_calls],
        m.tool_call_id,
        m.name,
    ]


def _number(value: float | None) -> float | None:
    return None if value is None else float(value)


def _plain_messages(messages: Sequence[Message]) -> str | None:
    """The JSON of messages made of text parts only (the common case), written
    directly: the same text :func:`canonical` gives them through the encoder, without
    building the nested lists first. ``None`` when a message has anything else."""
    out = []
    for m in messages:
        if m.tool_calls or m.tool_call_id is not None or m.name is not None:
            return None
        texts = []
        for p in m.content:
            if type(p) is not TextPart:
                return None
            texts.append('["t",' + _string(p.text) + "]")
        out.append("[" + _string(m.role) + ",[" + ",".join(texts) + "],[],null,null]")
    return ",".join(out)


def _plain_number(value: Any) -> str | None:
    """How the encoder writes ``None``, an int or a finite float; ``None`` for
    anything else."""
    if value is None:
        return "null"
    kind = type(value)
    if kind is int:
        return int.__repr__(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    return None


_BARE_TAIL = "[],null,null,null,null,null,[],null,{}]"


def _plain_tail(request: ChatRequest, options: Mapping[str, Any]) -> str | None:
    """The JSON of everything after the messages when it is plain (no tools, tool
    choice, response format, reasoning or options; numbers and stop strings), the
    same text the encoder writes; else ``None``."""
    if (
        request.tools
        or options
        or request.tool_choice is not None
        or request.response_format is not None
        or request.reasoning is not None
    ):
        return None
    if (
        request.temperature is None
        and request.top_p is None
        and request.max_tokens is None
        and request.stop == ()
    ):
        return _BARE_TAIL  # messages and nothing else
    temperature = request.temperature
    temperature = None if temperature is None else float(temperature)
    top_p = request.top_p
    top_p = None if top_p is None else float(top_p)
    t, p, n = (
        _plain_number(temperature),
        _plain_number(top_p),
        _plain_number(request.max_tokens),
    )
    if t is None or p is None or n is None:
        return None
    stop = request.stop
    if stop is None:
        stops = "null"
    elif isinstance(stop, (tuple, list)) and all(type(s) is str for s in stop):
        stops = "[" + ",".join([_string(s) for s in stop]) + "]"
    else:
        return None
    return "[],null,null," + t + "," + p + "," + n + "," + stops + ",null,{}]"


def canonical(request: ChatRequest) -> str:
    """The canonical JSON text of what changes ``request``'s answer."""
    options = request.options
    if options:
        options = {
            k: options[k]
            for k in sorted(options)
            if k not in REQUEST_OPTIONS and not is_secret_name(k)
        }
    model = request.model
    plain = _plain_messages(request.messages) if type(model) is str else None
    if plain is not None:
        tail = _plain_tail(request, options)
        if tail is not None:  # the common case, written without the encoder
            return "[" + _string(model) + ",[" + plain + "]," + tail
    choice = request.tool_choice
    fmt = request.response_format
    reasoning = request.reasoning
    return _ENCODER.encode(
        [
            model,
            [_message(m) for m in request.messages],
            [[t.name, t.description, t.parameters, t.strict] for t in request.tools],
            None if choice is None else [choice.mode, choice.name],
            None if fmt is None else [fmt.type, fmt.schema, fmt.name, fmt.strict],
            _number(request.temperature),
            _number(request.top_p),
            request.max_tokens,
            request.stop,
            None if reasoning is None else [reasoning.effort, reasoning.budget_tokens],
            options,
        ]
    )


def request_key(request: ChatRequest, namespace: str) -> str:
    """The key of ``request`` in ``namespace``: a SHA-256 hex digest."""
    digest = hashlib.sha256(namespace.encode())
    digest.update(b"\0")
    digest.update(canonical(request).encode())
    return digest.hexdigest()
