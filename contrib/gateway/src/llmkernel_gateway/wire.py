"""OpenAI's Chat Completions and Embeddings wire format, both ways.

Requests: a JSON body checked field by field (a :class:`BadRequest` names the field),
then the kernel's own conversion for messages, tools, tool choice and response
format. Responses: the kernel's :class:`~llmkernel.types.Response` as a
``chat.completion``, stream events as ``chat.completion.chunk`` SSE lines in
OpenAI's exact shape, embeddings as floats or base64 (what the official SDK asks for
by default).
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import attrs

from llmkernel.types import EmbeddingResponse, Response, StreamEvent, Usage

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

# OpenAI parameters passed to the provider unchanged (the OpenAI adapter sends them
# on; other adapters use or ignore what they know).
PASSTHROUGH = frozenset(
    {
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "parallel_tool_calls",
        "service_tier",
        "verbosity",
        "prediction",
    }
)
# Accepted and not sent upstream: the gateway never asks a provider to store answers.
IGNORED = frozenset({"metadata", "store", "n"})
# OpenAI's own, passed only to OpenAI (and Azure) deployments; a 400 naming the field
# for a model with another provider (llmkernel_gateway.extras).
OPENAI_ONLY = ("modalities", "audio", "web_search_options")
# The legacy function calling fields, read as tools and tool_choice.
LEGACY = frozenset({"functions", "function_call"})
CHAT_FIELDS = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "tools",
        "tool_choice",
        "response_format",
        "reasoning_effort",
        "user",
    }
)
EMBED_FIELDS = frozenset({"model", "input", "dimensions", "encoding_format", "user"})


class BadRequest(Exception):
    """The client's request is wrong; ``param`` names the field."""

    def __init__(self, param: str | None, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.param = param
        self.message = message
        self.status = status


@attrs.frozen(kw_only=True)
class ChatCall:
    """A checked chat request: what to pass to ``Kernel.achat``/``astream``."""

    model: str
    messages: list[Any]
    kwargs: dict[str, Any]
    stream: bool = False
    include_usage: bool = False
    #: OpenAI-only fields (OPENAI_ONLY) to turn into options for the deployments
    extras: dict[str, Any] = attrs.field(factory=dict)
    #: the request used the legacy ``functions``: answer with ``function_call``
    functions: bool = False


def parse_json(body: bytes, max_depth: int = 64) -> dict[str, Any]:
    """The body's JSON object; a :class:`BadRequest` when it is not one, or nests
    arrays and objects deeper than ``max_depth`` (the top-level object is 1)."""
    deep = f"the body nests arrays and objects deeper than {max_depth} levels"
    try:
        data = json.loads(body)
    except RecursionError:  # far deeper than any limit: the parser gave up
        raise BadRequest(None, deep + " ([plugin.gateway] max_json_depth)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(None, f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(None, f"the body must be a JSON object, not {type(data).__name__}")
    # fewer brackets than the limit (inside strings too) cannot nest deeper: no walk
    if body.count(b"[") + body.count(b"{") > max_depth and _deeper(data, max_depth):
        raise BadRequest(None, deep + " ([plugin.gateway] max_json_depth)")
    return data


def _deeper(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays and objects deeper than ``limit``."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _number(data: Mapping[str, Any], name: str, low: float, high: float) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(name, f"{name} must be a number, not {type(value).__name__}")
    if not low <= value <= high:
        raise BadRequest(name, f"{name} must be between {low:g} and {high:g}, not {value}")
    return float(value)


def _positive_int(data: Mapping[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(name, f"{name} must be a positive integer, not {value!r}")
    return value


def _model(data: Mapping[str, Any]) -> str:
    model = data.get("model")
    if model is None:
        raise BadRequest("model", "model is required")
    if not isinstance(model, str) or not model.strip():
        raise BadRequest("model", "model must be a non-empty string")
    return model


def chat_call(data: Mapping[str, Any]) -> ChatCall:
    """Check a ``/v1/chat/completions`` body; raise :class:`BadRequest` naming the field."""
    for name in data:
        if (
            name not in CHAT_FIELDS
            and name not in PASSTHROUGH
            and name not in IGNORED
            and name not in OPENAI_ONLY
            and name not in LEGACY
        ):
            raise BadRequest(name, f"unrecognized request argument supplied: {name}")
    model = _model(data)
    messages = data.get("messages")
    if messages is None:
        raise BadRequest("messages", "messages is required")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages", "messages must be a non-empty array")
    n = data.get("n")
    if n is not None and n != 1:
        raise BadRequest("n", "only n=1 is supported")
    stream = data.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise BadRequest("stream", "stream must be true or false")
    include_usage = False
    options = data.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise BadRequest("stream_options", "stream_options must be an object")
        if not stream:
            raise BadRequest("stream_options", "stream_options is only allowed when stream is true")
        include_usage = options.get("include_usage", False)
        if not isinstance(include_usage, bool):
            raise BadRequest("stream_options.include_usage", "include_usage must be true or false")
    kwargs: dict[str, Any] = {}
    max_tokens = _positive_int(data, "max_completion_tokens")
    if max_tokens is None:
        max_tokens = _positive_int(data, "max_tokens")
    if max_tokens is not None:
        kwargs["max_tokens"] = max_tokens
    temperature = _number(data, "temperature", 0, 2)
    if temperature is not None:
        kwargs["temperature"] = temperature
    top_p = _number(data, "top_p", 0, 1)
    if top_p is not None:
        kwargs["top_p"] = top_p
    stop = data.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            kwargs["stop"] = stop
        elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
            if stop:
                kwargs["stop"] = stop
        else:
            raise BadRequest("stop", "stop must be a string or an array of strings")
    for name in ("tools", "tool_choice", "response_format"):
        value = data.get(name)
        if value is not None:
            kwargs[name] = value
    if data.get("tools") is not None and not isinstance(data["tools"], list):
        raise BadRequest("tools", "tools must be an array")
    if data.get("response_format") is not None and not isinstance(data["response_format"], dict):
        raise BadRequest("response_format", "response_format must be an object")
    effort = data.get("reasoning_effort")
    if effort is not None:
        if not isinstance(effort, str):
            raise BadRequest("reasoning_effort", "reasoning_effort must be a string")
        kwargs["reasoning"] = effort
    user = data.get("user")
    if user is not None:
        if not isinstance(user, str):
            raise BadRequest("user", "user must be a string")
        kwargs["user"] = user
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise BadRequest("seed", "seed must be an integer")
    for name in PASSTHROUGH:
        if name in data and data[name] is not None:
            kwargs[name] = data[name]
    functions = _legacy_functions(data, kwargs)
    extras = {name: data[name] for name in OPENAI_ONLY if data.get(name) is not None}
    if "modalities" in extras and not (
        isinstance(extras["modalities"], list)
        and all(m in ("text", "audio") for m in extras["modalities"])
    ):
        raise BadRequest("modalities", 'modalities must be an array of "text" and "audio"')
    for name in ("audio", "web_search_options"):
        if name in extras and not isinstance(extras[name], dict):
            raise BadRequest(name, f"{name} must be an object")
    return ChatCall(
        model=model,
        messages=messages,
        kwargs=kwargs,
        stream=stream,
        include_usage=include_usage,
        extras=extras,
        functions=functions,
    )


def _legacy_functions(data: Mapping[str, Any], kwargs: dict[str, Any]) -> bool:
    """``functions`` / ``function_call`` as ``tools`` / ``tool_choice`` (in
    ``kwargs``); whether the request used them."""
    functions, choice = data.get("functions"), data.get("function_call")
    if functions is None and choice is None:
        return False
    if data.get("tools") is not None or data.get("tool_choice") is not None:
        name = "functions" if functions is not None else "function_call"
        raise BadRequest(name, f"{name} cannot be combined with tools or tool_choice")
    if functions is not None:
        if not isinstance(functions, list) or not all(isinstance(f, dict) for f in functions):
            raise BadRequest("functions", "functions must be an array of function objects")
        kwargs["tools"] = [{"type": "function", "function": f} for f in functions]
    if choice is not None:
        if choice in ("none", "auto"):
            kwargs["tool_choice"] = choice
        elif isinstance(choice, dict) and isinstance(choice.get("name"), str):
            kwargs["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
        else:
            raise BadRequest(
                "function_call", 'function_call must be "none", "auto" or {"name": ...}'
            )
    return True


@attrs.frozen(kw_only=True)
class EmbedCall:
    model: str
    inputs: list[str]
    dimensions: int | None
    base64: bool


def embed_call(data: Mapping[str, Any]) -> EmbedCall:
    """Check a ``/v1/embeddings`` body."""
    for name in data:
        if name not in EMBED_FIELDS:
            raise BadRequest(name, f"unrecognized request argument supplied: {name}")
    model = _model(data)
    raw = data.get("input")
    if raw is None:
        raise BadRequest("input", "input is required")
    if isinstance(raw, str):
        inputs = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(t, str) for t in raw):
        inputs = raw
    elif isinstance(raw, list) and raw:
        raise BadRequest(
            "input",
            "input must be a string or an array of strings (token arrays are not supported)",
        )
    else:
        raise BadRequest("input", "input must be a non-empty string or array of strings")
    fmt = data.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise BadRequest("encoding_format", "encoding_format must be 'float' or 'base64'")
    return EmbedCall(
        model=model,
        inputs=inputs,
        dimensions=_positive_int(data, "dimensions"),
        base64=fmt == "base64",
    )


# ------------------------------------------------------------------ responses


def usage_json(usage: Usage, cost: Decimal | None = None) -> dict[str, Any]:
    """OpenAI's ``usage``, plus ``cost``: the call's cost in USD as a number
    (``null`` when the model is unpriced), OpenRouter's field for it."""
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "cost": None if cost is None else float(cost),
    }


def completion_json(
    response: Response, *, id: str, created: int, model: str, functions: bool = False
) -> dict[str, Any]:
    """A ``chat.completion`` object; with ``functions`` (a legacy request), the first
    call as ``message.function_call`` and ``finish_reason`` ``function_call``."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": response.text if response.text or not response.tool_calls else None,
        "refusal": response.refusal,
    }
    if response.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json},
            }
            for call in response.tool_calls
        ]
    if response.reasoning:
        message["reasoning_content"] = response.reasoning
    finish: str = response.finish_reason
    if functions and response.tool_calls:
        first = message.pop("tool_calls")[0]
        message["function_call"] = first["function"]
        finish = "function_call" if finish == "tool_calls" else finish
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": usage_json(response.usage, response.cost),
    }


class Chunker:
    """Stream events as ``chat.completion.chunk`` SSE lines, OpenAI's shape exactly:
    a role chunk first, content and tool-call deltas (with ``index``), a finish
    chunk, a usage chunk when ``include_usage`` (then ``"usage": null`` on every
    other chunk; its ``usage.cost`` is the call's cost), and ``data: [DONE]``."""

    def __init__(
        self, *, id: str, created: int, model: str, include_usage: bool, functions: bool = False
    ) -> None:
        head = _dumps({"id": id, "object": "chat.completion.chunk", "created": created})
        self._head = "data: " + head[:-1] + ',"model":' + _dumps(model) + ',"choices":['
        self._tail = '],"usage":null}\n\n' if include_usage else "]}\n\n"
        self.include_usage = include_usage
        self.functions = functions  # a legacy request: calls as function_call deltas
        self._started = False
        self._usage: Usage | None = None
        self.cost: Decimal | None = None  # from the stream's usage event

    def _choice(self, delta: str, finish: str | None = None) -> str:
        reason = "null" if finish is None else _dumps(finish)
        return (
            self._head
            + '{"index":0,"delta":'
            + delta
            + ',"logprobs":null,"finish_reason":'
            + reason
            + "}"
            + self._tail
        )

    def start(self) -> str:
        """The first chunk: the assistant's role."""
        self._started = True
        return self._choice('{"role":"assistant","content":""}')

    def event(self, event: StreamEvent) -> str:
        """The chunk for one event ('' for events OpenAI has no chunk for)."""
        kind = event.type
        if kind == "text":
            return self._choice('{"content":' + _dumps(event.text) + "}")  # type: ignore[union-attr]
        if kind == "tool_call" and self.functions:
            if event.index:  # type: ignore[union-attr]
                return ""  # the legacy shape has one call
            function: dict[str, Any] = {"arguments": event.arguments}  # type: ignore[union-attr]
            if event.name is not None:  # type: ignore[union-attr]
                function["name"] = event.name  # type: ignore[union-attr]
            return self._choice('{"function_call":' + _dumps(function) + "}")
        if kind == "tool_call":
            call: dict[str, Any] = {"index": event.index}  # type: ignore[union-attr]
            if event.id is not None:  # type: ignore[union-attr]
                call["id"] = event.id  # type: ignore[union-attr]
                call["type"] = "function"
                call["function"] = {"name": event.name or "", "arguments": event.arguments}  # type: ignore[union-attr]
            else:
                call["function"] = {"arguments": event.arguments}  # type: ignore[union-attr]
            return self._choice('{"tool_calls":[' + _dumps(call) + "]}")
        if kind == "reasoning":
            text = event.text  # type: ignore[union-attr]
            return self._choice('{"reasoning_content":' + _dumps(text) + "}") if text else ""
        if kind == "usage":
            self._usage = event.usage  # type: ignore[union-attr]
            self.cost = event.cost  # type: ignore[union-attr]
            return ""
        if kind == "finish":
            reason = event.finish_reason  # type: ignore[union-attr]
            if self.functions and reason == "tool_calls":
                reason = "function_call"
            out = self._choice("{}", reason)
            if self.include_usage:
                out += (
                    self._head
                    + '],"usage":'
                    + _dumps(usage_json(self._usage or Usage(), self.cost))
                    + "}\n\n"
                )
            return out
        return ""

    @staticmethod
    def done() -> str:
        return "data: [DONE]\n\n"

    @staticmethod
    def error(body: Mapping[str, Any]) -> str:
        """An error after the stream began: the SDK raises it as an APIError."""
        return "data: " + _dumps(body) + "\n\n"


def embedding_json(response: EmbeddingResponse, *, model: str, as_base64: bool) -> dict[str, Any]:
    data = []
    for index, vector in enumerate(response.vectors):
        value: Any = (
            base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
            if as_base64
            else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": value})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {
            "prompt_tokens": response.usage.input_tokens,
            "total_tokens": response.usage.input_tokens,
        },
    }


def encode(text: str) -> bytes:
    """UTF-8, a lone surrogate (an upstream's ``"\\ud800"``) as its JSON escape: the
    text is JSON, where such a character only appears inside a string."""
    return text.encode("utf-8", "backslashreplace")


def dumps(value: Any) -> bytes:
    return _dumps(value).encode("utf-8", "backslashreplace")


__all__ = [
    "BadRequest",
    "ChatCall",
    "Chunker",
    "EmbedCall",
    "chat_call",
    "completion_json",
    "dumps",
    "embed_call",
    "embedding_json",
    "encode",
    "parse_json",
    "usage_json",
]
