"""Turning what users pass (OpenAI-style dicts, or the kernel's types) into the
kernel's types, once, at the API boundary. Errors name the field that is wrong."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from llmkernel.errors import InvalidRequestError
from llmkernel.types import (
    ChatRequest,
    EmbeddingRequest,
    FilePart,
    ImagePart,
    Message,
    Part,
    Reasoning,
    ReasoningPart,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    replace,
)

_ROLES = ("system", "user", "assistant", "tool", "developer")
_EFFORTS = ("minimal", "low", "medium", "high")


def invalid(field: str, problem: str) -> InvalidRequestError:
    """The error for a bad request field, naming it."""
    return InvalidRequestError(f"{field}: {problem}")


def messages(value: Iterable[Message | Mapping[str, Any]] | str) -> tuple[Message, ...]:
    if isinstance(value, str):
        return (Message.user(value),)
    result = tuple(_plain(m) or message(m, f"messages[{i}]") for i, m in enumerate(value))
    if not result:
        raise invalid("messages", "at least one message is needed")
    return result


_PLAIN_ROLES = frozenset({"system", "developer", "user", "assistant"})


def _plain(value: object) -> Message | None:
    """The common shape, ``{"role": ..., "content": "text"}``, without the general
    checks (the same ``Message`` :func:`message` builds); ``None`` for anything else."""
    if type(value) is dict and len(value) == 2:
        text = value.get("content")
        role = value.get("role")
        if type(text) is str and role in _PLAIN_ROLES:
            return Message(role=role, content=(TextPart(text=text),))
    return None


def message(value: Message | Mapping[str, Any], field: str = "message") -> Message:
    if isinstance(value, Message):
        return value
    if not isinstance(value, Mapping):
        raise invalid(field, f"expected a dict or Message, got {type(value).__name__}")
    role = value.get("role")
    if role not in _ROLES:
        raise invalid(f"{field}.role", f"must be one of {', '.join(_ROLES)}, not {role!r}")
    calls = tuple(
        tool_call(c, f"{field}.tool_calls[{i}]")
        for i, c in enumerate(value.get("tool_calls") or ())
    )
    parts = content(value.get("content"), f"{field}.content")
    reasoning = value.get("reasoning_content") or value.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        parts = (ReasoningPart(text=reasoning), *parts)
    tool_call_id = value.get("tool_call_id")
    if role == "tool" and not tool_call_id:
        raise invalid(f"{field}.tool_call_id", "a tool message needs the id of the call it answers")
    return Message(
        role=role,
        content=parts,
        tool_calls=calls,
        tool_call_id=tool_call_id,
        name=value.get("name"),
    )


def content(value: Any, field: str) -> tuple[Part, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (TextPart(text=value),)
    if isinstance(value, TextPart | ImagePart | FilePart | ReasoningPart):
        return (value,)
    if not isinstance(value, Sequence):
        raise invalid(field, f"expected a string or a list of parts, got {type(value).__name__}")
    return tuple(part(p, f"{field}[{i}]") for i, p in enumerate(value))


def part(value: Any, field: str) -> Part:
    if isinstance(value, TextPart | ImagePart | FilePart | ReasoningPart):
        return value
    if isinstance(value, str):
        return TextPart(text=value)
    if not isinstance(value, Mapping):
        raise invalid(field, f"expected a dict, got {type(value).__name__}")
    kind = value.get("type")
    if kind in ("text", "input_text"):
        text = value.get("text")
        if not isinstance(text, str):
            raise invalid(f"{field}.text", "must be a string")
        return TextPart(text=text, cache_control=_cache_control(value, field))
    if kind == "image_url":
        spec = value.get("image_url")
        url = spec.get("url") if isinstance(spec, Mapping) else spec
        detail = spec.get("detail") if isinstance(spec, Mapping) else None
        if not isinstance(url, str):
            raise invalid(f"{field}.image_url.url", "must be a string")
        found = image(url, detail, field)
        marker = _cache_control(value, field)
        return found if marker is None else replace(found, cache_control=marker)
    if kind == "image":
        try:
            return ImagePart(
                url=value.get("url"),
                data=value.get("data"),
                media_type=value.get("media_type"),
                detail=value.get("detail"),
                cache_control=_cache_control(value, field),
            )
        except ValueError as exc:
            raise invalid(field, str(exc)) from None
    if kind == "file":
        return file(value, field)
    if kind in ("reasoning", "thinking"):
        return ReasoningPart(
            text=value.get("text") or value.get("thinking") or "",
            signature=value.get("signature"),
            redacted=value.get("redacted") or value.get("data"),
        )
    raise invalid(f"{field}.type", f"unknown content part type {kind!r}")


def _cache_control(value: Mapping[str, Any], field: str) -> Mapping[str, Any] | None:
    marker = value.get("cache_control")
    if marker is None:
        return None
    if not isinstance(marker, Mapping) or not isinstance(marker.get("type"), str):
        raise invalid(
            f"{field}.cache_control", f'must be a dict like {{"type": "ephemeral"}}, not {marker!r}'
        )
    ttl = marker.get("ttl")
    if ttl is not None and ttl not in ("5m", "1h"):
        raise invalid(f"{field}.cache_control.ttl", f'must be "5m" or "1h", not {ttl!r}')
    return dict(marker)


def image(url: str, detail: Any, field: str) -> ImagePart:
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";")[0]
        if ";base64" not in header or not media_type or not data:
            raise invalid(f"{field}.image_url.url", "a data URL must be data:<type>;base64,<data>")
        return ImagePart(data=data, media_type=media_type, detail=detail)
    return ImagePart(url=url, detail=detail)


def file(value: Mapping[str, Any], field: str) -> FilePart:
    """OpenAI's ``{"type": "file", "file": {"file_data": "data:...;base64,...",
    "filename": ...}}``, or the kernel's own ``{"type": "file", "media_type", "data"
    or "url", "filename"}``."""
    spec = value.get("file")
    media_type, data, url = value.get("media_type"), value.get("data"), value.get("url")
    filename = value.get("filename")
    if isinstance(spec, Mapping):
        filename = spec.get("filename")
        raw = spec.get("file_data")
        if not isinstance(raw, str) or not raw.startswith("data:"):
            raise invalid(f"{field}.file.file_data", "must be a data:<type>;base64,<data> URL")
        header, _, data = raw.partition(",")
        media_type = header[5:].split(";")[0]
        if ";base64" not in header or not media_type or not data:
            raise invalid(f"{field}.file.file_data", "must be a data:<type>;base64,<data> URL")
    if not isinstance(media_type, str) or not media_type:
        raise invalid(f"{field}.media_type", "a file part needs its media type (application/pdf)")
    try:
        return FilePart(
            media_type=media_type,
            data=data,
            url=url,
            filename=filename,
            cache_control=_cache_control(value, field),
        )
    except ValueError as exc:
        raise invalid(field, str(exc)) from None


def tool_call(value: ToolCall | Mapping[str, Any], field: str) -> ToolCall:
    if isinstance(value, ToolCall):
        return value
    if not isinstance(value, Mapping):
        raise invalid(field, "expected a dict")
    function = value.get("function", value)
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise invalid(f"{field}.function.name", "is required")
    raw = function.get("arguments", {})
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as exc:
            raise invalid(f"{field}.function.arguments", f"is not valid JSON ({exc})") from None
    if not isinstance(raw, Mapping):
        raise invalid(f"{field}.function.arguments", "must be a JSON object")
    call_id = value.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise invalid(f"{field}.id", "is required")
    return ToolCall(id=call_id, name=name, arguments=dict(raw), signature=value.get("signature"))


def tools(value: Iterable[Tool | Mapping[str, Any]] | None) -> tuple[Tool, ...]:
    if not value:
        return ()
    result = []
    for i, item in enumerate(value):
        field = f"tools[{i}]"
        if isinstance(item, Tool):
            result.append(item)
            continue
        if not isinstance(item, Mapping):
            raise invalid(field, "expected a dict or Tool")
        spec = item.get("function", item) if item.get("type", "function") == "function" else None
        if not isinstance(spec, Mapping):
            raise invalid(
                f"{field}.type", f"only function tools are supported, not {item.get('type')!r}"
            )
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise invalid(f"{field}.function.name", "is required")
        params = spec.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(params, Mapping):
            raise invalid(f"{field}.function.parameters", "must be a JSON schema object")
        result.append(
            Tool(
                name=name,
                description=spec.get("description") or "",
                parameters=params,
                strict=spec.get("strict"),
                cache_control=_cache_control(item, field) or _cache_control(spec, field),
            )
        )
    names = [t.name for t in result]
    if len(set(names)) != len(names):
        raise invalid("tools", "tool names must be unique")
    return tuple(result)


def tool_choice(value: ToolChoice | str | Mapping[str, Any] | None) -> ToolChoice | None:
    if value is None or isinstance(value, ToolChoice):
        return value
    if isinstance(value, str):
        if value in ("auto", "none", "required"):
            return ToolChoice(mode=value)  # type: ignore[arg-type]
        if value == "any":
            return ToolChoice(mode="required")
        raise invalid("tool_choice", f"must be auto, none, required or a tool, not {value!r}")
    if isinstance(value, Mapping):
        name = (value.get("function") or {}).get("name") or value.get("name")
        if isinstance(name, str) and name:
            return ToolChoice(mode="tool", name=name)
    raise invalid("tool_choice", f"cannot read {value!r}")


def response_format(value: ResponseFormat | Mapping[str, Any] | None) -> ResponseFormat | None:
    if value is None or isinstance(value, ResponseFormat):
        return value
    if not isinstance(value, Mapping):
        raise invalid("response_format", "expected a dict")
    kind = value.get("type")
    if kind == "json_schema":
        spec = value.get("json_schema") or {}
        schema = spec.get("schema")
        if not isinstance(schema, Mapping):
            raise invalid("response_format.json_schema.schema", "is required (a JSON schema)")
        return ResponseFormat(
            type="json_schema",
            schema=schema,
            name=spec.get("name") or "response",
            strict=bool(spec.get("strict", True)),
        )
    if kind in ("json_object", "text"):
        return ResponseFormat(type=kind)
    if kind == "object" and "properties" in value:  # a bare JSON schema
        return ResponseFormat(type="json_schema", schema=value)
    raise invalid("response_format.type", f"must be text, json_object or json_schema, not {kind!r}")


def reasoning(value: Reasoning | str | Mapping[str, Any] | None) -> Reasoning | None:
    if value is None or isinstance(value, Reasoning):
        return value
    if isinstance(value, str):
        if value not in _EFFORTS:
            raise invalid(
                "reasoning", f"effort must be one of {', '.join(_EFFORTS)}, not {value!r}"
            )
        return Reasoning(effort=value)  # type: ignore[arg-type]
    if isinstance(value, Mapping):
        effort = value.get("effort")
        budget = value.get("budget_tokens")
        if effort is not None and effort not in _EFFORTS:
            raise invalid("reasoning.effort", f"must be one of {', '.join(_EFFORTS)}")
        if budget is not None and (not isinstance(budget, int) or budget < 0):
            raise invalid("reasoning.budget_tokens", "must be a non-negative integer")
        return Reasoning(effort=effort, budget_tokens=budget)
    raise invalid("reasoning", f"cannot read {value!r}")


def stop(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def number(value: Any, field: str, low: float, high: float | None) -> float | None:
    """A number within ``[low, high]``, or ``None``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(field, f"must be a number, not {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise invalid(field, f"must be {bound}, not {value!r}")
    return float(value)


def positive_int(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid(field, f"must be a positive integer, not {value!r}")
    return value


def text_or_none(value: Any, field: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise invalid(field, f"must be a string, not {value!r}")


def stops(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple) and all(isinstance(s, str) for s in value):
        return tuple(value)
    raise invalid("stop", f"must be a string or a list of strings, not {value!r}")


def message_list(value: Any) -> tuple[Message, ...]:
    if type(value) is list or type(value) is tuple:  # the common case, no ABC checks
        return messages(value)
    if isinstance(value, str | Message):
        return messages(value) if isinstance(value, str) else (value,)
    if isinstance(value, Mapping):
        raise invalid("messages", "must be a list of messages, not one dict: wrap it in [...]")
    if value is None or not isinstance(value, Iterable):
        raise invalid("messages", f"must be a string or a list of messages, not {value!r}")
    return messages(value)


def tool_list(value: Any) -> tuple[Tool, ...]:
    if value is not None and (isinstance(value, str | Mapping) or not isinstance(value, Iterable)):
        raise invalid("tools", f"must be a list of tools, not {value!r}")
    return tools(value)


def checked_tool_choice(value: Any, offered: tuple[Tool, ...]) -> ToolChoice | None:
    choice = tool_choice(value)
    if choice is not None and choice.mode == "tool":
        names = [t.name for t in offered]
        if choice.name not in names:
            listed = ", ".join(names) or "no tools were offered"
            raise invalid("tool_choice", f"names tool {choice.name!r}, not offered ({listed})")
    if choice is not None and choice.mode == "required" and not offered:
        raise invalid("tool_choice", "is 'required' but no tools were offered")
    return choice


def options(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise invalid("options", f"must be a dict of provider options, not {value!r}")
    return dict(value)


def metadata(value: Any) -> dict[str, str]:
    if not value:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise invalid("metadata", f"must be a dict of strings to strings, not {value!r}")
    return dict(value)


#: The keyword arguments of a chat call; anything else is a provider option.
CHAT_FIELDS = (
    "model",
    "messages",
    "tools",
    "tool_choice",
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "response_format",
    "reasoning",
    "user",
    "metadata",
    "options",
    "timeout",
)


def extras(extra: Mapping[str, Any], known: Sequence[str] = CHAT_FIELDS) -> dict[str, Any]:
    """Keyword arguments beyond the known ones pass through as provider options,
    unless one looks like a typo of a known field."""
    import difflib

    for key in extra:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
        if close:
            raise invalid(
                key,
                f"unknown argument; did you mean {close[0]!r}? (provider options go in "
                "options={...})",
            )
    return dict(extra)


# the builders below take arguments named like these functions
_options, _metadata, _response_format, _reasoning = options, metadata, response_format, reasoning


def chat_request(
    model: str,
    messages: Iterable[Message | Mapping[str, Any]] | str = (),
    *,
    tools: Iterable[Tool | Mapping[str, Any]] | None = None,
    tool_choice: ToolChoice | str | Mapping[str, Any] | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    stop: str | Iterable[str] | None = None,
    response_format: ResponseFormat | Mapping[str, Any] | None = None,
    reasoning: Reasoning | str | Mapping[str, Any] | None = None,
    user: str | None = None,
    metadata: Mapping[str, str] | None = None,
    options: Mapping[str, Any] | None = None,
    **extra: Any,
) -> ChatRequest:
    """User input checked and built into a :class:`ChatRequest` (``Kernel.build_request``)."""
    if not isinstance(model, str) or not model:
        raise invalid(
            "model", f'must be a non-empty "provider/model" string or alias, not {model!r}'
        )
    offered = tool_list(tools) if tools is not None else ()
    return ChatRequest(
        model=model,
        messages=message_list(messages),
        tools=offered,
        tool_choice=(
            checked_tool_choice(tool_choice, offered) if tool_choice is not None else None
        ),
        max_tokens=positive_int(max_tokens, "max_tokens") if max_tokens is not None else None,
        temperature=(
            number(temperature, "temperature", 0.0, 2.0) if temperature is not None else None
        ),
        top_p=number(top_p, "top_p", 0.0, 1.0) if top_p is not None else None,
        stop=stops(stop) if stop is not None else (),
        response_format=_response_format(response_format),
        reasoning=_reasoning(reasoning),
        user=text_or_none(user, "user"),
        options=({**_options(options), **extras(extra)} if options is not None or extra else {}),
        metadata=_metadata(metadata) if metadata else {},
    )


def embedding_request(
    model: Any,
    input: Any = (),
    *,
    dimensions: Any = None,
    metadata: Any = None,
    options: Any = None,
    **extra: Any,
) -> EmbeddingRequest:
    """User input checked and built into an :class:`EmbeddingRequest`."""
    if model is None or model == "":
        raise invalid("model", "an embedding model is required (provider/model)")
    if not isinstance(model, str):
        raise invalid("model", f'must be a "provider/model" string, not {model!r}')
    if input is None or not isinstance(input, str | Iterable):
        raise invalid("input", f"must be a text or a list of texts, not {input!r}")
    inputs = (input,) if isinstance(input, str) else tuple(input)
    if not inputs:
        raise invalid("input", "at least one text to embed is needed")
    for index, text in enumerate(inputs):
        if not isinstance(text, str):
            raise invalid(f"input[{index}]", f"must be a string, not {text!r}")
    if dimensions is not None and (
        isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1
    ):
        raise invalid("dimensions", f"must be a positive integer, not {dimensions!r}")
    return EmbeddingRequest(
        model=model,
        inputs=inputs,
        dimensions=dimensions,
        options={**_options(options), **extra},
        metadata=_metadata(metadata),
    )
