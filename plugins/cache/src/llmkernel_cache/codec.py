"""Responses to JSON text and back, for the store.

What is kept: the message (text, images, thinking with signatures, tool calls), the
finish reason, usage, id, model, provider, refusal, the parsed structured output
when it is JSON, and the original cost. Not kept: headers (they describe the
original HTTP exchange, rate limits included), latency and attempts.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from llmkernel.types import (
    FilePart,
    ImagePart,
    Message,
    Part,
    ReasoningPart,
    Response,
    TextPart,
    ToolCall,
    Usage,
    replace,
)

__all__ = ["dumps", "kept", "loads"]

_VERSION = 1


def _part(part: Part) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ReasoningPart):
        return {
            "type": "reasoning",
            "text": part.text,
            "signature": part.signature,
            "redacted": part.redacted,
        }
    if isinstance(part, FilePart):
        return {
            "type": "file",
            "url": part.url,
            "data": part.data,
            "media_type": part.media_type,
            "filename": part.filename,
        }
    return {
        "type": "image",
        "url": part.url,
        "data": part.data,
        "media_type": part.media_type,
        "detail": part.detail,
    }


def _load_part(data: dict[str, Any]) -> Part:
    kind = data.pop("type")
    if kind == "text":
        return TextPart(**data)
    if kind == "reasoning":
        return ReasoningPart(**data)
    if kind == "file":
        return FilePart(**data)
    return ImagePart(**data)


_PLAIN = (str, int, float, bool, type(None))
# one encoder, made once (json.dumps with options builds one per call)
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _json_or_none(value: Any) -> Any:
    if type(value) in _PLAIN:
        return value
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return None
    return value


def dumps(response: Response) -> str:
    """``response`` as compact JSON text."""
    message = response.message
    usage = response.usage
    data = {
        "v": _VERSION,
        "message": {
            "role": message.role,
            "content": [_part(p) for p in message.content],
            "tool_calls": [
                {"id": c.id, "name": c.name, "arguments": c.arguments, "signature": c.signature}
                for c in message.tool_calls
            ],
            "tool_call_id": message.tool_call_id,
            "name": message.name,
        },
        "finish_reason": response.finish_reason,
        "usage": usage.as_dict(),
        "id": response.id,
        "model": response.model,
        "provider": response.provider,
        "refusal": response.refusal,
        "parsed": _json_or_none(response.parsed),
        "cost": None if response.cost is None else str(response.cost),
    }
    return _ENCODER.encode(data)


def kept(response: Response, **changes: Any) -> Response:
    """What :func:`loads` of :func:`dumps` gives back, without the round trip: the
    same frozen parts, with what the store does not keep (headers, latency,
    attempts, a non-JSON ``parsed``) reset, and ``changes`` applied (the cache's
    memory LRU holds this with ``cost=0``, ready to be a hit)."""
    return replace(
        response,
        **{
            "parsed": _json_or_none(response.parsed),
            "latency": 0.0,
            "attempts": 1,
            "cached": False,
            "cache_kind": None,
            "similarity": None,
            "headers": {},
            **changes,
        },
    )


def loads(text: str) -> Response:
    """The response stored as ``text`` by :func:`dumps`; ``cost`` is the original
    cost (the cache reports its own cost for a hit)."""
    data = json.loads(text)
    if data.get("v") != _VERSION:
        raise ValueError(f"unknown cache entry version {data.get('v')!r}")
    m = data["message"]
    message = Message(
        role=m["role"],
        content=tuple(_load_part(p) for p in m["content"]),
        tool_calls=tuple(ToolCall(**c) for c in m["tool_calls"]),
        tool_call_id=m["tool_call_id"],
        name=m["name"],
    )
    return Response(
        message=message,
        finish_reason=data["finish_reason"],
        usage=Usage(**data["usage"]),
        id=data["id"],
        model=data["model"],
        provider=data["provider"],
        refusal=data["refusal"],
        parsed=data["parsed"],
        cost=None if data["cost"] is None else Decimal(data["cost"]),
    )
