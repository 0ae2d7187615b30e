"""Bedrock's Converse answer (and its usage and stop reasons) as the kernel's types.

``ConverseResponse``: ``output.message`` (``role``, ``content`` blocks: ``text``,
``toolUse`` with ``toolUseId``/``name``/``input``, ``reasoningContent``),
``stopReason`` (``end_turn``, ``tool_use``, ``max_tokens``, ``stop_sequence``,
``guardrail_intervened``, ``content_filtered``, ``model_context_window_exceeded``,
``malformed_model_output``, ``malformed_tool_use``), ``usage`` (``inputTokens``,
``outputTokens``, ``totalTokens``, ``cacheReadInputTokens``,
``cacheWriteInputTokens``, ``cacheDetails``), ``metrics.latencyMs``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from llmkernel.types import (
    FinishReason,
    Message,
    Part,
    ReasoningPart,
    Response,
    ResponseFormat,
    TextPart,
    ToolCall,
    Usage,
)

__all__ = ["Malformed", "finish_reason", "parse_converse", "parsed_output", "usage_from"]

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}


class Malformed(Exception):
    """A field of the answer is missing or of the wrong type; says which."""


def count(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return max(0, value)
    return 0


def usage_from(data: Any) -> Usage:
    """Converse's ``TokenUsage`` in the kernel's convention.

    Bedrock reports cache reads and writes beside ``inputTokens`` (``totalTokens``
    adds all four); the kernel's ``input_tokens`` includes them. A server whose
    ``totalTokens`` shows ``inputTokens`` already holds them is read as it is.
    ``cacheDetails`` entries with ``ttl: "1h"`` are the one-hour writes.
    """
    if not isinstance(data, Mapping):
        return Usage()
    given = count(data.get("inputTokens"))
    output = count(data.get("outputTokens"))
    read = count(data.get("cacheReadInputTokens"))
    write = count(data.get("cacheWriteInputTokens"))
    total = data.get("totalTokens")
    included = isinstance(total, int) and total == given + output and (read or write)
    hour = 0
    details = data.get("cacheDetails")
    if isinstance(details, list):
        hour = sum(
            count(d.get("inputTokens"))
            for d in details
            if isinstance(d, Mapping) and d.get("ttl") == "1h"
        )
    return Usage(
        input_tokens=given if included else given + read + write,
        output_tokens=output,
        cached_input_tokens=read,
        cache_write_tokens=write,
        cache_write_1h_tokens=min(hour, write),
    )


def finish_reason(value: Any, *, has_calls: bool) -> FinishReason:
    reason = _FINISH.get(value, "stop") if isinstance(value, str) else "stop"
    if has_calls and reason == "stop":
        return "tool_calls"
    return reason


def parsed_output(text: str, fmt: ResponseFormat | None) -> Any:
    if fmt is None or fmt.type == "text" or not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _tool_call(block: Mapping[str, Any], index: int) -> ToolCall:
    name = block.get("name")
    if not isinstance(name, str) or not name:
        raise Malformed(f"content[{index}].toolUse has no name")
    call_id = block.get("toolUseId")
    arguments = block.get("input")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, Mapping):
        raise Malformed(f"content[{index}].toolUse.input is not an object")
    return ToolCall(
        id=call_id if isinstance(call_id, str) and call_id else f"call_{index}",
        name=name,
        arguments=dict(arguments),
    )


def _reasoning(block: Any, index: int) -> ReasoningPart:
    if not isinstance(block, Mapping):
        raise Malformed(f"content[{index}].reasoningContent is not an object")
    redacted = block.get("redactedContent")
    if isinstance(redacted, str):
        return ReasoningPart(redacted=redacted)
    text = block.get("reasoningText")
    if not isinstance(text, Mapping):
        raise Malformed(f"content[{index}].reasoningContent has no reasoningText")
    signature, thought = text.get("signature"), text.get("text")
    return ReasoningPart(
        text=thought if isinstance(thought, str) else "",
        signature=signature if isinstance(signature, str) else None,
    )


def parse_converse(
    data: Any,
    fmt: ResponseFormat | None,
    *,
    model: str,
    headers: Mapping[str, str] | None = None,
    id: str | None = None,
) -> Response:
    """A ``ConverseResponse`` as a :class:`Response`; raises :class:`Malformed`."""
    if not isinstance(data, Mapping):
        raise Malformed(f"expected a JSON object, got {type(data).__name__}")
    output = data.get("output")
    message = output.get("message") if isinstance(output, Mapping) else None
    if not isinstance(message, Mapping):
        raise Malformed("output.message is missing")
    content = message.get("content")
    if not isinstance(content, list):
        raise Malformed("output.message.content is not a list")
    parts: list[Part] = []
    calls: list[ToolCall] = []
    for index, block in enumerate(content):
        if not isinstance(block, Mapping):
            raise Malformed(f"content[{index}] is not an object")
        if "text" in block:
            if not isinstance(block["text"], str):
                raise Malformed(f"content[{index}].text is not a string")
            parts.append(TextPart(text=block["text"]))
        elif "toolUse" in block:
            if not isinstance(block["toolUse"], Mapping):
                raise Malformed(f"content[{index}].toolUse is not an object")
            calls.append(_tool_call(block["toolUse"], index))
        elif "reasoningContent" in block:
            parts.append(_reasoning(block["reasoningContent"], index))
    text = "".join(p.text for p in parts if isinstance(p, TextPart))
    return Response(
        message=Message(role="assistant", content=tuple(parts), tool_calls=tuple(calls)),
        finish_reason=finish_reason(data.get("stopReason"), has_calls=bool(calls)),
        usage=usage_from(data.get("usage")),
        model=model,
        parsed=parsed_output(text, fmt),
        id=id,
        headers=headers or {},
    )
