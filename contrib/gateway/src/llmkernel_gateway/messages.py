"""Anthropic's Messages API (``POST /v1/messages``, ``/v1/messages/count_tokens``),
both ways, in one place for every provider: a request body becomes the kernel's
messages and call arguments; the kernel's :class:`~llmkernel.types.Response` (or its
stream events) becomes Anthropic's ``message`` (or its event stream); a failure
becomes Anthropic's error shape and status.

Built to Anthropic's API reference, read 2026-12-07: "Messages"
(https://docs.anthropic.com/en/api/messages), "Streaming messages"
(https://docs.anthropic.com/en/docs/build-with-claude/streaming), "Errors"
(https://docs.anthropic.com/en/api/errors) and "Count message tokens"
(https://docs.anthropic.com/en/api/messages-count-tokens), and to the types of the
official ``anthropic`` SDK (2.17), which parses these shapes.

The current API (SDK 2.17) has no ``temperature``, ``top_p`` or ``top_k``; they are
still accepted, as clients built on older versions send them (``top_k`` goes only
to Anthropic, Gemini and Ollama deployments).

Usage follows Anthropic's convention on the way out: its ``input_tokens`` counts
only the uncached input, beside ``cache_read_input_tokens`` and
``cache_creation_input_tokens`` (the kernel's ``input_tokens`` includes both).

A stream is ``message_start``, a ``ping``, then per content block
``content_block_start``, its deltas (``text_delta``, ``input_json_delta``,
``thinking_delta``, ``signature_delta``) and ``content_block_stop``, then
``message_delta`` (the stop reason and the whole usage) and ``message_stop``; a
``ping`` every ``ping_interval`` seconds of silence; an ``error`` event, never a
stream that just stops, when it fails after it began.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from llmkernel.types import (
    ImagePart,
    Message,
    Part,
    Reasoning,
    ReasoningDelta,
    ReasoningPart,
    Response,
    ResponseFormat,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
)
from llmkernel_gateway.extras import Extra, same
from llmkernel_gateway.failures import Failure
from llmkernel_gateway.wire import BadRequest, _model, _number, _positive_int

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

FIELDS = frozenset(
    {
        "model",
        "messages",
        "system",
        "max_tokens",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "thinking",
        "metadata",
        "output_config",
    }
)
COUNT_FIELDS = frozenset(
    {"model", "messages", "system", "tools", "tool_choice", "thinking", "output_config"}
)
#: Anthropic's own fields, for Anthropic deployments (``top_k`` for Gemini too).
EXTRAS = (
    Extra(
        name="top_k",
        takers={
            "anthropic": same("top_k"),
            "gemini": lambda v: {"generationConfig": {"topK": v}},
            "ollama": same("top_k"),
        },
    ),
    *(
        Extra(name=name, takers={"anthropic": same(name)}, required=False)
        for name in (
            "service_tier",
            "speed",
            "inference_geo",
            "diagnostics",
            "cache_control",
            "user_profile_id",
            "workspace_id",
        )
    ),
    *(
        Extra(name=name, takers={"anthropic": same(name)})
        for name in ("container", "context_management", "mcp_servers")
    ),
)
_EXTRA_NAMES = frozenset(e.name for e in EXTRAS)
_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "max": "high"}
#: request headers passed on to Anthropic deployments (through ``metadata``, which
#: the Anthropic provider reads and no other sends anywhere)
PASSED_HEADERS = (b"anthropic-version", b"anthropic-beta")


@attrs.frozen(kw_only=True)
class MessagesCall:
    """A checked ``/v1/messages`` body: what to pass to ``Kernel.build_request``."""

    model: str
    messages: tuple[Message, ...]
    kwargs: dict[str, Any]
    extras: dict[str, Any]
    stream: bool = False


def call(data: Mapping[str, Any], *, count: bool = False) -> MessagesCall:
    """Check a ``/v1/messages`` (or, ``count``, a ``count_tokens``) body."""
    known = COUNT_FIELDS if count else FIELDS
    for name in data:
        if name not in known and name not in _EXTRA_NAMES:
            raise BadRequest(name, f"{name}: Extra inputs are not permitted")
    model = _model(data)
    kwargs: dict[str, Any] = {}
    if not count:
        max_tokens = _positive_int(data, "max_tokens")
        if max_tokens is None:
            raise BadRequest("max_tokens", "max_tokens: Field required")
        kwargs["max_tokens"] = max_tokens
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("stream", "stream must be true or false")
    raw = data.get("messages")
    if not isinstance(raw, list) or not raw:
        raise BadRequest("messages", "messages: at least one message is required")
    messages = [*system_messages(data.get("system")), *convert_messages(raw)]
    for name, high in (("temperature", 1), ("top_p", 1)):
        value = _number(data, name, 0, high)
        if value is not None:
            kwargs[name] = value
    stops = data.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise BadRequest("stop_sequences", "stop_sequences must be an array of strings")
        if stops:
            kwargs["stop"] = stops
    if data.get("tools") is not None:
        kwargs["tools"] = tools(data["tools"])
    choice = data.get("tool_choice")
    if choice is not None:
        found = tool_choice(choice)
        if found is not None:
            kwargs["tool_choice"] = found
    reasoning = thinking(data.get("thinking"))
    output_config = data.get("output_config")
    if output_config is not None:
        if not isinstance(output_config, Mapping):
            raise BadRequest("output_config", "output_config must be an object")
        effort = output_config.get("effort")
        if effort is not None:
            if effort not in _EFFORTS:
                raise BadRequest(
                    "output_config.effort", "output_config.effort must be low, medium, high or max"
                )
            reasoning = reasoning or Reasoning(effort=_EFFORTS[effort])  # type: ignore[arg-type]
        fmt = output_config.get("format")
        if fmt is not None:
            schema = fmt.get("schema") if isinstance(fmt, Mapping) else None
            if (
                not isinstance(fmt, Mapping)
                or fmt.get("type") != "json_schema"
                or not isinstance(schema, Mapping)
            ):
                raise BadRequest(
                    "output_config.format",
                    "output_config.format must be {type: json_schema, schema}",
                )
            kwargs["response_format"] = ResponseFormat(type="json_schema", schema=schema)
    if reasoning is not None:
        kwargs["reasoning"] = reasoning
    metadata = data.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise BadRequest("metadata", "metadata must be an object")
        user = metadata.get("user_id")
        if user is not None:
            if not isinstance(user, str):
                raise BadRequest("metadata.user_id", "metadata.user_id must be a string")
            kwargs["user"] = user
    extras = {name: data[name] for name in _EXTRA_NAMES if data.get(name) is not None}
    return MessagesCall(
        model=model, messages=tuple(messages), kwargs=kwargs, extras=extras, stream=stream
    )


def thinking(raw: Any) -> Reasoning | None:
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, Mapping) else None
    if kind == "disabled":
        return None
    if kind == "enabled":
        budget = raw.get("budget_tokens")
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise BadRequest(
                "thinking.budget_tokens", "thinking.budget_tokens must be a positive integer"
            )
        return Reasoning(budget_tokens=budget)
    if kind == "adaptive":
        return Reasoning(effort="medium")
    raise BadRequest("thinking.type", "thinking.type must be enabled, adaptive or disabled")


def _cache(block: Mapping[str, Any]) -> Mapping[str, Any] | None:
    value = block.get("cache_control")
    return value if isinstance(value, Mapping) and value else None


def system_messages(raw: Any) -> list[Message]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [Message.system(raw)] if raw else []
    if not isinstance(raw, list):
        raise BadRequest("system", "system must be a string or an array of text blocks")
    parts: list[Part] = []
    for index, block in enumerate(raw):
        if (
            not isinstance(block, Mapping)
            or block.get("type") != "text"
            or not isinstance(block.get("text"), str)
        ):
            raise BadRequest(f"system.{index}", f"system.{index} must be a text block")
        parts.append(TextPart(text=block["text"], cache_control=_cache(block)))
    return [Message(role="system", content=tuple(parts))] if parts else []


def convert_messages(raw: list[Any]) -> list[Message]:
    """Anthropic's user and assistant turns as kernel messages: ``tool_result``
    blocks become tool messages (before the rest of their user turn)."""
    out: list[Message] = []
    for index, message in enumerate(raw):
        field = f"messages.{index}"
        if not isinstance(message, Mapping):
            raise BadRequest(field, f"{field} must be an object")
        role = message.get("role")
        content = message.get("content")
        if role not in ("user", "assistant"):
            raise BadRequest(f"{field}.role", f"{field}.role must be user or assistant")
        if isinstance(content, str):
            out.append(Message(role=role, content=(TextPart(text=content),)))
            continue
        if not isinstance(content, list):
            raise BadRequest(f"{field}.content", f"{field}.content must be a string or blocks")
        parts: list[Part] = []
        calls: list[ToolCall] = []
        for number, block in enumerate(content):
            where = f"{field}.content.{number}"
            kind = block.get("type") if isinstance(block, Mapping) else None
            if kind == "text" and isinstance(block.get("text"), str):
                parts.append(TextPart(text=block["text"], cache_control=_cache(block)))
            elif kind == "image" and role == "user":
                parts.append(image(block, where))
            elif kind == "tool_result" and role == "user":
                out.append(tool_result(block, where))
            elif kind == "tool_use" and role == "assistant":
                calls.append(tool_use(block, where))
            elif kind == "thinking" and role == "assistant":
                parts.append(
                    ReasoningPart(
                        text=str(block.get("thinking") or ""),
                        signature=block.get("signature") or None,
                    )
                )
            elif kind == "redacted_thinking" and role == "assistant":
                parts.append(ReasoningPart(redacted=str(block.get("data") or "")))
            else:
                raise BadRequest(
                    f"{where}.type", f"{where}: a {kind!r} block is not supported in a {role} turn"
                )
        if parts or calls:
            out.append(Message(role=role, content=tuple(parts), tool_calls=tuple(calls)))
    return out


def image(block: Mapping[str, Any], where: str) -> ImagePart:
    source = block.get("source")
    if not isinstance(source, Mapping):
        source = {}
    kind, cache = source.get("type"), _cache(block)
    try:
        if kind == "base64":
            return ImagePart(
                data=source["data"], media_type=source.get("media_type"), cache_control=cache
            )
        if kind == "url" and isinstance(source.get("url"), str):
            return ImagePart(url=source["url"], cache_control=cache)
    except (ValueError, KeyError) as exc:
        raise BadRequest(f"{where}.source", f"{where}.source: {exc}") from None
    raise BadRequest(f"{where}.source", f"{where}.source must be a base64 or url image source")


def tool_result(block: Mapping[str, Any], where: str) -> Message:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise BadRequest(f"{where}.tool_use_id", f"{where}.tool_use_id is required")
    raw = block.get("content")
    parts: list[Part] = []
    if isinstance(raw, str):
        parts.append(TextPart(text=raw))
    elif isinstance(raw, list):
        for number, item in enumerate(raw):
            kind = item.get("type") if isinstance(item, Mapping) else None
            if kind == "text" and isinstance(item.get("text"), str):
                parts.append(TextPart(text=item["text"]))
            elif kind == "image":
                parts.append(image(item, f"{where}.content.{number}"))
            else:
                raise BadRequest(
                    f"{where}.content.{number}.type",
                    f"{where}.content.{number}: a {kind!r} block is not supported",
                )
    elif raw is not None:
        raise BadRequest(f"{where}.content", f"{where}.content must be a string or blocks")
    if block.get("is_error") and parts and isinstance(parts[0], TextPart):
        # the kernel's tool message has no error flag: say it in the text
        parts[0] = TextPart(text="Error: " + parts[0].text)
    return Message(role="tool", tool_call_id=call_id, content=tuple(parts))


def tool_use(block: Mapping[str, Any], where: str) -> ToolCall:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input", {})
    if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
        raise BadRequest(where, f"{where}: a tool_use block needs its id and name")
    if not isinstance(arguments, Mapping):
        raise BadRequest(f"{where}.input", f"{where}.input must be an object")
    return ToolCall(id=call_id, name=name, arguments=arguments)


def tools(raw: Any) -> list[dict[str, Any]]:
    """Client tools as the kernel's tool dicts (Anthropic's server tools, which only
    Anthropic can run, are refused)."""
    if not isinstance(raw, list):
        raise BadRequest("tools", "tools must be an array")
    out = []
    for index, tool in enumerate(raw):
        kind = tool.get("type", "custom") if isinstance(tool, Mapping) else None
        if kind not in ("custom", None) or not isinstance(tool, Mapping):
            raise BadRequest(
                f"tools.{index}.type",
                f"tools.{index} is a {kind!r} tool; only client tools (with "
                "input_schema) are supported",
            )
        schema = tool.get("input_schema")
        if not isinstance(schema, Mapping):
            raise BadRequest(
                f"tools.{index}.input_schema", f"tools.{index}.input_schema: Field required"
            )
        spec: dict[str, Any] = {
            "type": "function",
            "name": tool.get("name"),
            "description": tool.get("description") or "",
            "parameters": dict(schema),
        }
        if tool.get("strict") is not None:
            spec["strict"] = tool["strict"]
        if _cache(tool):
            spec["cache_control"] = _cache(tool)
        out.append(spec)
    return out


def tool_choice(raw: Any) -> ToolChoice | None:
    kind = raw.get("type") if isinstance(raw, Mapping) else None
    if kind == "auto":
        return ToolChoice(mode="auto")
    if kind == "any":
        return ToolChoice(mode="required")
    if kind == "none":
        return ToolChoice(mode="none")
    if kind == "tool" and isinstance(raw.get("name"), str):
        return ToolChoice(mode="tool", name=raw["name"])
    raise BadRequest("tool_choice.type", "tool_choice.type must be auto, any, tool or none")


# ---------------------------------------------------------------------- output


def usage_json(usage: Usage) -> dict[str, Any]:
    """The kernel's usage in Anthropic's convention (uncached input apart)."""
    write_1h = min(usage.cache_write_1h_tokens, usage.cache_write_tokens)
    return {
        "input_tokens": usage.uncached_input_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_input_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": usage.cache_write_tokens - write_1h,
            "ephemeral_1h_input_tokens": write_1h,
        },
        "output_tokens": usage.output_tokens,
    }


def stop_reason(response: Response) -> str:
    if response.tool_calls and response.finish_reason in ("stop", "tool_calls"):
        return "tool_use"
    return _STOP.get(response.finish_reason, "end_turn")


def content_blocks(response: Response) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in response.message.content:
        if isinstance(part, ReasoningPart):
            if part.redacted:
                blocks.append({"type": "redacted_thinking", "data": part.redacted})
            else:
                blocks.append(
                    {"type": "thinking", "thinking": part.text, "signature": part.signature or ""}
                )
        elif isinstance(part, TextPart) and part.text:
            blocks.append({"type": "text", "text": part.text})
    for tool_call in response.tool_calls:
        blocks.append(
            {
                "type": "tool_use",
                "id": tool_call.id,
                "name": tool_call.name,
                "input": dict(tool_call.arguments),
            }
        )
    return blocks


def message_json(response: Response, *, id: str, model: str) -> dict[str, Any]:
    """Anthropic's ``message`` object."""
    return {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content_blocks(response),
        "stop_reason": stop_reason(response),
        "stop_sequence": None,
        "usage": usage_json(response.usage),
    }


# ---------------------------------------------------------------------- errors

#: (status, Anthropic error type) by the gateway's status; upstream failures and no
#: deployment left are Anthropic's 500 / 529, as its clients retry them.
_ERRORS: dict[int, tuple[int, str]] = {
    400: (400, "invalid_request_error"),
    401: (401, "authentication_error"),
    403: (403, "permission_error"),
    404: (404, "not_found_error"),
    405: (405, "invalid_request_error"),
    413: (413, "request_too_large"),
    429: (429, "rate_limit_error"),
    500: (500, "api_error"),
    502: (500, "api_error"),
    503: (529, "overloaded_error"),
    504: (504, "timeout_error"),
}


def error_status(failure: Failure) -> tuple[int, str]:
    """Anthropic's status and error type for a failure."""
    if failure.kind == "overloaded":
        return 529, "overloaded_error"
    return _ERRORS.get(failure.status, (500, "api_error"))


def error_json(failure: Failure, request_id: str | None = None) -> dict[str, Any]:
    _, kind = error_status(failure)
    body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": failure.message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


# ---------------------------------------------------------------------- streams


def _sse(kind: str, payload: dict[str, Any]) -> str:
    return "event: " + kind + "\ndata: " + _dumps(payload) + "\n\n"


PING = _sse("ping", {"type": "ping"})


class EventWriter:
    """The kernel's stream events as Anthropic's event stream; see the module
    docstring. Each method returns the SSE text to send."""

    def __init__(self, *, id: str, model: str) -> None:
        self.id = id
        self.model = model
        self._index = -1
        self._open: str | None = None  # the open block's type
        self._reasoning_index = -1
        self._calls: set[int] = set()

    def start(self) -> str:
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return _sse("message_start", {"type": "message_start", "message": message}) + PING

    @staticmethod
    def ping() -> str:
        return PING

    def _begin(self, kind: str, block: dict[str, Any]) -> str:
        out = self._stop()
        self._index += 1
        self._open = kind
        return out + _sse(
            "content_block_start",
            {"type": "content_block_start", "index": self._index, "content_block": block},
        )

    def _stop(self) -> str:
        if self._open is None:
            return ""
        self._open = None
        return _sse("content_block_stop", {"type": "content_block_stop", "index": self._index})

    def _delta(self, delta: dict[str, Any]) -> str:
        return _sse(
            "content_block_delta",
            {"type": "content_block_delta", "index": self._index, "delta": delta},
        )

    def event(self, event: StreamEvent) -> str:
        if isinstance(event, TextDelta):
            out = "" if self._open == "text" else self._begin("text", {"type": "text", "text": ""})
            return out + self._delta({"type": "text_delta", "text": event.text})
        if isinstance(event, ReasoningDelta):
            return self._thinking(event)
        if isinstance(event, ToolCallDelta):
            return self._tool_call(event)
        return ""

    def _tool_call(self, event: ToolCallDelta) -> str:
        out = ""
        if event.index not in self._calls or self._open != "tool_use":
            if event.id is None and event.index in self._calls:
                return ""  # a late fragment of a call already closed cannot be sent
            self._calls.add(event.index)
            block = {
                "type": "tool_use",
                "id": event.id or f"toolu_{self.id}{event.index}",
                "name": event.name or "",
                "input": {},
            }
            out = self._begin("tool_use", block)
        if event.arguments:
            out += self._delta({"type": "input_json_delta", "partial_json": event.arguments})
        return out

    def _thinking(self, event: ReasoningDelta) -> str:
        if event.redacted:
            return (
                self._begin(
                    "redacted_thinking", {"type": "redacted_thinking", "data": event.redacted}
                )
                + self._stop()
            )
        out = ""
        if self._open != "thinking" or event.index != self._reasoning_index:
            if not (event.text or event.signature):
                return ""
            self._reasoning_index = event.index
            out = self._begin("thinking", {"type": "thinking", "thinking": "", "signature": ""})
        if event.text:
            out += self._delta({"type": "thinking_delta", "thinking": event.text})
        if event.signature:
            out += self._delta({"type": "signature_delta", "signature": event.signature})
        return out

    def finish(self, response: Response) -> str:
        out = self._stop()
        if self._index < 0:  # an empty answer still has a text block
            out += self._begin("text", {"type": "text", "text": ""}) + self._stop()
        delta = {"stop_reason": stop_reason(response), "stop_sequence": None}
        return (
            out
            + _sse(
                "message_delta",
                {"type": "message_delta", "delta": delta, "usage": usage_json(response.usage)},
            )
            + _sse("message_stop", {"type": "message_stop"})
        )

    def fail(self, failure: Failure) -> str:
        return _sse("error", error_json(failure))


__all__ = [
    "EXTRAS",
    "PASSED_HEADERS",
    "EventWriter",
    "MessagesCall",
    "call",
    "error_json",
    "error_status",
    "message_json",
    "usage_json",
]
