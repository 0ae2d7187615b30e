"""Ollama's ``/api/chat`` answers read into the kernel's types, every field guarded.

A chat object is ``{"model", "created_at", "message": {"role", "content",
"thinking", "tool_calls"}, "done", "done_reason", "prompt_eval_count",
"eval_count", ...durations}``. A tool call is ``{"id"?, "function": {"index"?,
"name", "arguments": {...}}}`` with the arguments already a JSON object; calls
without an id get ``call_<n>`` (their position in the answer).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from llmkernel.errors import MalformedResponseError
from llmkernel.types import (
    FinishReason,
    Message,
    Part,
    ReasoningPart,
    Response,
    TextPart,
    ToolCall,
    Usage,
)
from llmkernel_http import parse_arguments, token_count


def malformed(problem: str, *, provider: str, model: str) -> MalformedResponseError:
    return MalformedResponseError(
        f"Ollama answered something unexpected: {problem}", provider=provider, model=model
    )


def count(value: Any) -> int:
    """A token count, or 0 when absent (Ollama omits ``prompt_eval_count`` when the
    whole prompt came from its cache): :func:`llmkernel_http.token_count`."""
    return token_count(value)


def parse_usage(data: Mapping[str, Any]) -> Usage:
    """``prompt_eval_count`` is the input, ``eval_count`` the output (thinking
    included; Ollama does not count thinking tokens apart)."""
    return Usage(
        input_tokens=count(data.get("prompt_eval_count")),
        output_tokens=count(data.get("eval_count")),
    )


def finish_from(done_reason: Any, *, has_tool_calls: bool) -> FinishReason:
    """``length`` when ``num_predict`` cut the answer; ``tool_calls`` when it has
    calls (Ollama says ``stop``); else ``stop`` (``stop``, ``load``, ``unload``)."""
    if done_reason == "length":
        return "length"
    return "tool_calls" if has_tool_calls else "stop"


def tool_call_from(raw: Any, index: int, *, provider: str, model: str) -> ToolCall:
    if not isinstance(raw, Mapping):
        raise malformed(f"tool call {index} is not an object", provider=provider, model=model)
    function = raw.get("function")
    if not isinstance(function, Mapping):
        raise malformed(f"tool call {index} has no function object", provider=provider, model=model)
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise malformed(f"tool call {index} has no function name", provider=provider, model=model)
    try:  # an object, or an OpenAI-style JSON string from some proxies
        arguments = parse_arguments(function.get("arguments"), name=name)
    except ValueError as exc:
        raise malformed(str(exc), provider=provider, model=model) from None
    call_id = raw.get("id")
    if not isinstance(call_id, str) or not call_id:
        call_id = f"call_{index}"
    return ToolCall(id=call_id, name=name, arguments=dict(arguments))


def tool_calls_from(raw: Any, start: int, *, provider: str, model: str) -> list[ToolCall]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise malformed("message.tool_calls is not a list", provider=provider, model=model)
    return [
        tool_call_from(item, start + offset, provider=provider, model=model)
        for offset, item in enumerate(raw)
    ]


def text_field(message: Mapping[str, Any], key: str, *, provider: str, model: str) -> str:
    value = message.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise malformed(f"message.{key} is not a string", provider=provider, model=model)
    return value


def parse_response(data: Any, *, provider: str, model: str, json_output: bool = False) -> Response:
    """The :class:`Response` for a non-streamed ``/api/chat`` answer. With
    ``json_output`` (a ``format`` was sent) the text is parsed into ``parsed``; text
    that is not JSON (an answer cut by ``num_predict``) leaves ``parsed`` None."""
    if not isinstance(data, Mapping):
        raise malformed("the body is not a JSON object", provider=provider, model=model)
    message = data.get("message")
    if not isinstance(message, Mapping):
        raise malformed("the answer has no message object", provider=provider, model=model)
    text = text_field(message, "content", provider=provider, model=model)
    thinking = text_field(message, "thinking", provider=provider, model=model)
    calls = tool_calls_from(message.get("tool_calls"), 0, provider=provider, model=model)
    parts: list[Part] = []
    if thinking:
        parts.append(ReasoningPart(text=thinking))
    if text:
        parts.append(TextPart(text=text))
    answered = data.get("model")
    return Response(
        message=Message(role="assistant", content=tuple(parts), tool_calls=tuple(calls)),
        finish_reason=finish_from(data.get("done_reason"), has_tool_calls=bool(calls)),
        usage=parse_usage(data),
        id=None,
        model=answered if isinstance(answered, str) and answered else model,
        parsed=parse_json(text) if json_output else None,
    )


def parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None
