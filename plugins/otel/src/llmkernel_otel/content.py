"""Messages as the conventions' ``gen_ai.input.messages`` / ``gen_ai.output.messages``
(their JSON schemas, v1.41.0: ``docs/gen-ai/gen-ai-input-messages.json`` and
``gen-ai-output-messages.json``), recorded only when content capture is on.

Text, tool calls and results, reasoning text, and images (``uri``, or ``blob``
with the base64 data). Reasoning signatures and redacted thinking (opaque
provider data) are left out. Nothing here ever sees a key or a header.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from llmkernel.types import ImagePart, Message, ReasoningPart, Response, TextPart

__all__ = ["FINISH_REASONS", "input_messages", "output_messages"]

#: llmkernel's finish reasons as the output schema's ``FinishReason`` values
FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_call",
    "content_filter": "content_filter",
}


def _parts(message: Message) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if message.role == "tool":
        parts.append(
            {"type": "tool_call_response", "id": message.tool_call_id, "response": message.text}
        )
        return parts
    for part in message.content:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "content": part.text})
        elif isinstance(part, ReasoningPart):
            if part.text:
                parts.append({"type": "reasoning", "content": part.text})
        elif isinstance(part, ImagePart):
            if part.url is not None:
                parts.append({"type": "uri", "modality": "image", "uri": part.url})
            else:
                parts.append(
                    {
                        "type": "blob",
                        "modality": "image",
                        "mime_type": part.media_type,
                        "content": part.data,
                    }
                )
    for call in message.tool_calls:
        parts.append(
            {"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments}
        )
    return parts


def _message(message: Message) -> dict[str, Any]:
    role = "system" if message.role == "developer" else message.role
    out: dict[str, Any] = {"role": role, "parts": _parts(message)}
    if message.name:
        out["name"] = message.name
    return out


def input_messages(messages: Iterable[Message]) -> str:
    """The chat history sent, as a JSON string (span attributes cannot hold maps)."""
    return _dumps([_message(m) for m in messages])


def output_messages(response: Response) -> str:
    """The answer, one message (llmkernel asks for one choice)."""
    message = _message(response.message)
    message["role"] = "assistant"
    message["finish_reason"] = FINISH_REASONS.get(response.finish_reason, response.finish_reason)
    return _dumps([message])


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
