"""OpenAI JSON answers → the kernel's Response, Usage, finish reason, models, vectors."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Mapping
from typing import Any

from llmkernel.types import (
    FinishReason,
    Message,
    ModelInfo,
    Part,
    ReasoningPart,
    Response,
    ResponseFormat,
    TextPart,
    ToolCall,
    Usage,
)
from llmkernel_http import parse_arguments as shared_parse_arguments
from llmkernel_http import token_count

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


class Malformed(Exception):
    """A field of the answer is missing or of the wrong type; says which."""


def finish_reason(value: Any, *, has_calls: bool) -> FinishReason:
    reason = _FINISH.get(value, "stop") if isinstance(value, str) else "stop"
    if has_calls and reason == "stop":
        return "tool_calls"
    return reason


_int = token_count


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def parse_usage(data: Any) -> Usage | None:
    """OpenAI's usage object in the kernel's convention (which is OpenAI's own:
    ``prompt_tokens`` already includes cached tokens, ``completion_tokens``
    includes reasoning tokens). DeepSeek's ``prompt_cache_hit_tokens`` counts as
    cached when ``prompt_tokens_details`` is absent."""
    if not isinstance(data, Mapping):
        return None
    prompt = _mapping(data.get("prompt_tokens_details"))
    completion = _mapping(data.get("completion_tokens_details"))
    cached = _int(prompt.get("cached_tokens")) or _int(data.get("prompt_cache_hit_tokens"))
    return Usage(
        input_tokens=_int(data.get("prompt_tokens")),
        output_tokens=_int(data.get("completion_tokens")),
        cached_input_tokens=cached,
        reasoning_tokens=_int(completion.get("reasoning_tokens")),
    )


def chunk_usage(chunk: Mapping[str, Any]) -> Usage | None:
    """Usage on a chat completion (chunk): ``usage``, or Groq's ``x_groq.usage``."""
    found = parse_usage(chunk.get("usage"))
    if found is None:
        found = parse_usage(_mapping(chunk.get("x_groq")).get("usage"))
    return found


def reasoning_text(obj: Mapping[str, Any]) -> str:
    """Thinking text from a message or delta: ``reasoning_content`` (DeepSeek, vLLM)
    or ``reasoning`` (OpenRouter, newer vLLM)."""
    for key in ("reasoning_content", "reasoning"):
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def parse_arguments(raw: Any, name: str) -> dict[str, Any]:
    """:func:`llmkernel_http.parse_arguments`, failing with :class:`Malformed`."""
    try:
        return shared_parse_arguments(raw, name=name)
    except ValueError as exc:
        raise Malformed(str(exc)) from None


def tool_calls(raw: Any) -> tuple[ToolCall, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise Malformed("message.tool_calls is not a list")
    calls = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise Malformed(f"message.tool_calls[{i}] is not an object")
        function = item.get("function")
        if not isinstance(function, Mapping):
            raise Malformed(f"message.tool_calls[{i}].function is missing")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise Malformed(f"message.tool_calls[{i}].function.name is missing")
        call_id = item.get("id")
        calls.append(
            ToolCall(
                id=call_id if isinstance(call_id, str) and call_id else f"call_{i}",
                name=name,
                arguments=parse_arguments(function.get("arguments"), name),
            )
        )
    return tuple(calls)


def parse_response(data: Any, fmt: ResponseFormat | None) -> Response:
    """A ``chat.completion`` object → Response. Raises :class:`Malformed`."""
    if not isinstance(data, Mapping):
        raise Malformed(f"expected a JSON object, got {type(data).__name__}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise Malformed("no choices in the answer")
    choice = choices[0]
    msg = choice.get("message")
    if not isinstance(msg, Mapping):
        raise Malformed("choices[0].message is missing")
    content = msg.get("content")
    if content is not None and not isinstance(content, str):
        raise Malformed("choices[0].message.content is not a string")
    calls = tool_calls(msg.get("tool_calls"))
    parts: list[Part] = []
    thinking = reasoning_text(msg)
    if thinking:
        parts.append(ReasoningPart(text=thinking))
    if content:
        parts.append(TextPart(text=content))
    refusal = msg.get("refusal")
    refusal = refusal if isinstance(refusal, str) and refusal else None
    response_id = data.get("id")
    model = data.get("model")
    return Response(
        message=Message(role="assistant", content=tuple(parts), tool_calls=calls),
        finish_reason=finish_reason(choice.get("finish_reason"), has_calls=bool(calls)),
        usage=chunk_usage(data) or Usage(),
        id=response_id if isinstance(response_id, str) else None,
        model=model if isinstance(model, str) else "",
        parsed=parsed_output(content or "", fmt, refusal),
        refusal=refusal,
    )


def parsed_output(text: str, fmt: ResponseFormat | None, refusal: str | None) -> Any:
    """The JSON of a structured answer; None when not asked for, refused or not JSON
    (an answer cut off by ``length``, say)."""
    if fmt is None or fmt.type == "text" or refusal or not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def model_list(data: Any, provider: str) -> list[ModelInfo]:
    from llmkernel_openai.models import capabilities_for

    if not isinstance(data, Mapping) or not isinstance(data.get("data"), list):
        raise Malformed('expected {"data": [...]} listing the models')
    models = []
    for item in data["data"]:
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
            raise Malformed("a model entry has no id")
        owner = item.get("owned_by")
        models.append(
            ModelInfo(
                id=item["id"],
                provider=provider,
                capabilities=capabilities_for(item["id"]),
                owned_by=owner if isinstance(owner, str) else None,
            )
        )
    return models


def embeddings(data: Any, expected: int) -> tuple[list[list[float]], Usage, str]:
    """Vectors in input order (by ``index``), usage and model of an embeddings answer.

    Each ``embedding`` is a list of floats, or (``encoding_format: "base64"``) the
    base64 of little-endian float32 values.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("data"), list):
        raise Malformed('expected {"data": [...]} with the embeddings')
    items = data["data"]
    if len(items) != expected:
        raise Malformed(f"{expected} inputs but {len(items)} embeddings")
    vectors: list[list[float] | None] = [None] * expected
    for position, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise Malformed(f"data[{position}] is not an object")
        index = item.get("index", position)
        if not isinstance(index, int) or not 0 <= index < expected or vectors[index] is not None:
            raise Malformed(f"data[{position}].index {index!r} is out of place")
        vectors[index] = _vector(item.get("embedding"), position)
    model = data.get("model")
    use = parse_usage(data.get("usage")) or Usage()
    return [v for v in vectors if v is not None], use, model if isinstance(model, str) else ""


def _vector(raw: Any, position: int) -> list[float]:
    if isinstance(raw, str):
        try:
            blob = base64.b64decode(raw, validate=True)
        except ValueError:
            raise Malformed(f"data[{position}].embedding is not valid base64") from None
        if len(blob) % 4:
            raise Malformed(f"data[{position}].embedding is not a whole number of float32s")
        return list(struct.unpack(f"<{len(blob) // 4}f", blob))
    if isinstance(raw, list) and all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in raw
    ):
        return [float(x) for x in raw]
    raise Malformed(f"data[{position}].embedding is neither a list of numbers nor base64")


#: Former names, kept while llmkernel-azure still calls them.
chat_response = parse_response
usage = parse_usage
