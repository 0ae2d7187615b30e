"""OpenAI's Responses API (``POST /v1/responses``), both ways, in one place for every
provider: a request body becomes the kernel's messages and call arguments, the
kernel's :class:`~llmkernel.types.Response` (or its stream events) becomes the
``response`` object (or its typed events).

Built to OpenAI's API reference, read 2026-12-07: "Create a model response"
(https://platform.openai.com/docs/api-reference/responses/create), "The response
object", and "Streaming events"
(https://platform.openai.com/docs/api-reference/responses-streaming), and to the
types of the official ``openai`` SDK (3.57, ``openai/types/responses``), which the
SDK parses these shapes with.

Input items: a string (one user message), or messages (``role`` user, system,
developer or assistant; ``content`` a string or ``input_text`` / ``input_image`` /
``output_text`` parts), ``function_call`` and ``function_call_output`` items and
``reasoning`` items (their ``encrypted_content`` is the provider's signature of the
thinking, sent back unchanged; Anthropic's redacted thinking travels as
``llmkernel-redacted:<data>``). Consecutive assistant-side items (reasoning, an
assistant message, function calls) are one kernel assistant message.

A stream is ``response.created``, ``response.in_progress``, then per output item
``response.output_item.added``, its parts and deltas
(``response.content_part.added``, ``response.output_text.delta`` ...
``.done``, ``response.content_part.done``; ``response.function_call_arguments.delta``
... ``.done``; ``response.reasoning_summary_part.added``,
``response.reasoning_summary_text.delta`` ... ``.done``,
``response.reasoning_summary_part.done``), ``response.output_item.done``, and last
exactly one of ``response.completed``, ``response.incomplete`` (cut by
``max_output_tokens`` or a content filter) or ``response.failed`` (an error after
the stream began), each event with ``sequence_number`` counting from 0.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from llmkernel import convert
from llmkernel.errors import InvalidRequestError
from llmkernel.types import (
    Message,
    Part,
    Reasoning,
    ReasoningPart,
    Response,
    ResponseFormat,
    StreamEvent,
    TextPart,
    ToolCall,
    Usage,
)
from llmkernel_gateway.extras import Extra
from llmkernel_gateway.failures import Failure
from llmkernel_gateway.wire import BadRequest, _model, _number, _positive_int

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

#: How a redacted thinking block (Anthropic) travels in ``encrypted_content``.
REDACTED_PREFIX = "llmkernel-redacted:"

FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "text",
        "reasoning",
        "max_output_tokens",
        "temperature",
        "top_p",
        "metadata",
        "store",
        "stream",
        "stream_options",
        "previous_response_id",
        "include",
        "user",
        "truncation",
        "max_tool_calls",
        "top_logprobs",
        "background",
        "conversation",
        "prompt",
    }
)
#: Fields for OpenAI deployments only: hints, dropped for other providers.
EXTRAS = (
    Extra.openai("parallel_tool_calls", required=False),
    Extra.openai("prompt_cache_key", required=False),
    Extra.openai("safety_identifier", required=False),
    Extra.openai("service_tier", required=False),
    Extra.openai("verbosity", required=False),  # from text.verbosity
)
_EXTRA_NAMES = frozenset(e.name for e in EXTRAS) - {"verbosity"}
_EFFORTS = {"minimal": "minimal", "low": "low", "medium": "medium", "high": "high", "xhigh": "high"}
_METADATA_KEYS = 16


@attrs.frozen(kw_only=True)
class ResponsesCall:
    """A checked ``/v1/responses`` body.

    ``messages`` is this request's own input (without ``instructions``, which a
    later turn does not inherit); ``kwargs`` are ``Kernel.build_request``'s
    arguments; ``extras`` the provider-only fields (:mod:`llmkernel_gateway.extras`);
    ``echo`` the request's settings as the response object repeats them.
    """

    model: str
    messages: tuple[Message, ...]
    instructions: str | None
    kwargs: dict[str, Any]
    extras: dict[str, Any]
    echo: dict[str, Any]
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = None
    summaries: bool = False
    encrypted: bool = False

    def kernel_messages(self, history: Sequence[Message] = ()) -> tuple[Message, ...]:
        """What the kernel is sent: instructions, the stored turns, this input."""
        head = (Message.system(self.instructions),) if self.instructions else ()
        return (*head, *history, *self.messages)


def call(data: Mapping[str, Any]) -> ResponsesCall:
    """Check a ``/v1/responses`` body; :class:`BadRequest` names the wrong field."""
    for name in data:
        if name not in FIELDS and name not in _EXTRA_NAMES:
            raise BadRequest(name, f"unrecognized request argument supplied: {name}")
    model = _model(data)
    for name, what in (
        ("background", "background responses"),
        ("conversation", "conversations"),
        ("prompt", "prompt templates"),
    ):
        if data.get(name):
            raise BadRequest(name, f"{what} ({name}) are not supported by this gateway")
    stream = _bool(data, "stream", False)
    store = _bool(data, "store", True)
    raw_input = data.get("input")
    if raw_input is None:
        raise BadRequest("input", "input is required")
    messages = input_messages(raw_input)
    instructions = data.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise BadRequest("instructions", "instructions must be a string")
    kwargs: dict[str, Any] = {}
    max_tokens = _positive_int(data, "max_output_tokens")
    if max_tokens is not None:
        kwargs["max_tokens"] = max_tokens
    for name, low, high in (("temperature", 0, 2), ("top_p", 0, 1)):
        value = _number(data, name, low, high)
        if value is not None:
            kwargs[name] = value
    tools = data.get("tools")
    if tools is not None:
        kwargs["tools"] = function_tools(tools)
    choice = data.get("tool_choice")
    if choice is not None:
        kwargs["tool_choice"] = tool_choice(choice)
    extras = {name: data[name] for name in _EXTRA_NAMES if data.get(name) is not None}
    text = data.get("text")
    if text is not None:
        if not isinstance(text, Mapping):
            raise BadRequest("text", "text must be an object")
        fmt = text_format(text.get("format"))
        if fmt is not None:
            kwargs["response_format"] = fmt
        if text.get("verbosity") is not None:
            extras["verbosity"] = text["verbosity"]
    summaries = False
    reasoning = data.get("reasoning")
    if reasoning is not None:
        if not isinstance(reasoning, Mapping):
            raise BadRequest("reasoning", "reasoning must be an object")
        effort = reasoning.get("effort")
        if effort is not None and effort != "none":
            if effort not in _EFFORTS:
                raise BadRequest(
                    "reasoning.effort",
                    f"reasoning.effort must be one of none, {', '.join(_EFFORTS)}, not {effort!r}",
                )
            kwargs["reasoning"] = Reasoning(effort=_EFFORTS[effort])  # type: ignore[arg-type]
        summary = reasoning.get("summary") or reasoning.get("generate_summary")
        if summary not in (None, "auto", "concise", "detailed"):
            raise BadRequest(
                "reasoning.summary", "reasoning.summary must be auto, concise or detailed"
            )
        summaries = summary is not None
    user = data.get("user")
    if user is not None:
        if not isinstance(user, str):
            raise BadRequest("user", "user must be a string")
        kwargs["user"] = user
    include = data.get("include") or []
    if not isinstance(include, list) or not all(isinstance(i, str) for i in include):
        raise BadRequest("include", "include must be an array of strings")
    previous = data.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not previous):
        raise BadRequest("previous_response_id", "previous_response_id must be a response id")
    metadata = _metadata(data.get("metadata"))
    echo = {
        "instructions": instructions,
        "max_output_tokens": max_tokens,
        "metadata": metadata,
        "parallel_tool_calls": data.get("parallel_tool_calls", True),
        "previous_response_id": previous,
        "reasoning": {
            "effort": reasoning.get("effort") if reasoning else None,
            "summary": reasoning.get("summary") if reasoning else None,
        },
        "store": store,
        "temperature": kwargs.get("temperature", 1.0),
        "text": {"format": (text or {}).get("format") or {"type": "text"}},
        "tool_choice": choice if choice is not None else "auto",
        "tools": list(tools or []),
        "top_p": kwargs.get("top_p", 1.0),
        "truncation": data.get("truncation") or "disabled",
        "user": user,
    }
    return ResponsesCall(
        model=model,
        messages=messages,
        instructions=instructions or None,
        kwargs=kwargs,
        extras=extras,
        echo=echo,
        stream=stream,
        store=store,
        previous_response_id=previous,
        summaries=summaries,
        encrypted="reasoning.encrypted_content" in include,
    )


def _bool(data: Mapping[str, Any], name: str, default: bool) -> bool:
    value = data.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadRequest(name, f"{name} must be true or false")
    return value


def _metadata(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or len(value) > _METADATA_KEYS:
        raise BadRequest(
            "metadata", f"metadata must be an object of at most {_METADATA_KEYS} pairs"
        )
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str) or len(k) > 64 or len(v) > 512:
            raise BadRequest(
                "metadata",
                "metadata keys must be strings of at most 64 characters and values strings "
                "of at most 512",
            )
    return dict(value)


# ---------------------------------------------------------------------- input


def input_messages(raw: Any) -> tuple[Message, ...]:
    """The input (a string or a list of items) as kernel messages."""
    if isinstance(raw, str):
        return (Message.user(raw),)
    if not isinstance(raw, list):
        raise BadRequest("input", "input must be a string or an array of input items")
    out: list[Message] = []
    # the assistant turn being gathered from consecutive reasoning, message and
    # function_call items: its parts and calls
    parts: list[Part] = []
    calls: list[ToolCall] = []

    def flush() -> None:
        if parts or calls:
            out.append(Message(role="assistant", content=tuple(parts), tool_calls=tuple(calls)))
            parts.clear()
            calls.clear()

    for index, item in enumerate(raw):
        field = f"input[{index}]"
        if not isinstance(item, Mapping):
            raise BadRequest(field, f"{field} must be an object")
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role == "assistant":
                parts.extend(_content(item.get("content"), f"{field}.content", assistant=True))
                continue
            if role not in ("user", "system", "developer"):
                raise BadRequest(
                    f"{field}.role",
                    f"{field}.role must be user, assistant, system or developer, not {role!r}",
                )
            flush()
            out.append(
                Message(role=role, content=_content(item.get("content"), f"{field}.content"))
            )
        elif kind == "function_call":
            calls.append(_function_call(item, field))
        elif kind == "reasoning":
            parts.append(reasoning_part(item, field))
        elif kind == "function_call_output":
            flush()
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise BadRequest(f"{field}.call_id", f"{field}.call_id is required")
            output = item.get("output")
            content = (
                (TextPart(text=output),)
                if isinstance(output, str)
                else _content(output, f"{field}.output")
            )
            out.append(Message(role="tool", tool_call_id=call_id, content=content))
        else:
            raise BadRequest(
                f"{field}.type",
                f"input item type {kind!r} is not supported (message, function_call, "
                "function_call_output and reasoning are)",
            )
    flush()
    if not out:
        raise BadRequest("input", "input must not be empty")
    return tuple(out)


def _content(raw: Any, field: str, *, assistant: bool = False) -> tuple[Part, ...]:
    if isinstance(raw, str):
        return (TextPart(text=raw),)
    if not isinstance(raw, list):
        raise BadRequest(field, f"{field} must be a string or an array of content parts")
    parts: list[Part] = []
    for index, part in enumerate(raw):
        where = f"{field}[{index}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind in ("input_text", "output_text", "text"):
            text = part.get("text")
            if not isinstance(text, str):
                raise BadRequest(f"{where}.text", f"{where}.text must be a string")
            parts.append(TextPart(text=text))
        elif kind == "refusal" and assistant:
            parts.append(TextPart(text=str(part.get("refusal") or "")))
        elif kind == "input_image" and not assistant:
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                raise BadRequest(
                    f"{where}.image_url",
                    f"{where} needs an image_url (a URL or a data URL; file_id is not supported)",
                )
            detail = part.get("detail")
            try:
                parts.append(convert.image(url, None if detail == "auto" else detail, where))
            except InvalidRequestError as exc:
                raise BadRequest(where, str(exc)) from None
        else:
            raise BadRequest(f"{where}.type", f"content part type {kind!r} is not supported here")
    return tuple(parts)


def _function_call(item: Mapping[str, Any], field: str) -> ToolCall:
    call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments", "")
    if not isinstance(call_id, str) or not call_id:
        raise BadRequest(f"{field}.call_id", f"{field}.call_id is required")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"{field}.name", f"{field}.name is required")
    if not isinstance(arguments, str):
        raise BadRequest(f"{field}.arguments", f"{field}.arguments must be a JSON string")
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        raise BadRequest(f"{field}.arguments", f"{field}.arguments is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise BadRequest(f"{field}.arguments", f"{field}.arguments must be a JSON object")
    return ToolCall(id=call_id, name=name, arguments=parsed)


def reasoning_part(item: Mapping[str, Any], field: str) -> ReasoningPart:
    """A ``reasoning`` item as the kernel's thinking part (signature or redacted
    data from ``encrypted_content``)."""
    texts = [
        s.get("text", "")
        for s in (item.get("summary") or item.get("content") or [])
        if isinstance(s, Mapping) and isinstance(s.get("text", ""), str)
    ]
    encrypted = item.get("encrypted_content")
    if encrypted is not None and not isinstance(encrypted, str):
        raise BadRequest(f"{field}.encrypted_content", "encrypted_content must be a string")
    if encrypted and encrypted.startswith(REDACTED_PREFIX):
        return ReasoningPart(redacted=encrypted.removeprefix(REDACTED_PREFIX))
    return ReasoningPart(text="\n\n".join(texts), signature=encrypted or None)


def function_tools(raw: Any) -> list[Any]:
    """The tools, all function tools (the only kind a gateway over every provider can
    run: built-in tools are OpenAI's own)."""
    if not isinstance(raw, list):
        raise BadRequest("tools", "tools must be an array")
    for index, tool in enumerate(raw):
        kind = tool.get("type") if isinstance(tool, Mapping) else None
        if kind != "function":
            raise BadRequest(
                f"tools[{index}].type",
                f"tools[{index}] is a {kind!r} tool; only function tools are supported",
            )
    return raw


def tool_choice(raw: Any) -> Any:
    if raw in ("auto", "none", "required"):
        return raw
    if isinstance(raw, Mapping) and raw.get("type") == "function" and raw.get("name"):
        return {"type": "function", "function": {"name": raw["name"]}}
    raise BadRequest(
        "tool_choice", "tool_choice must be auto, none, required or {type: function, name}"
    )


def text_format(raw: Any) -> ResponseFormat | None:
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, Mapping) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat(type="json_object")
    if kind == "json_schema":
        schema = raw.get("schema")
        if not isinstance(schema, Mapping):
            raise BadRequest("text.format.schema", "text.format.schema must be a JSON schema")
        return ResponseFormat(
            type="json_schema",
            schema=schema,
            name=raw.get("name") or "response",
            strict=bool(raw.get("strict", False)),
        )
    raise BadRequest(
        "text.format.type", "text.format.type must be text, json_object or json_schema"
    )


# ---------------------------------------------------------------------- output


def usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_input_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def encrypted_of(part: ReasoningPart) -> str | None:
    if part.redacted:
        return REDACTED_PREFIX + part.redacted
    return part.signature


def reasoning_item(
    item_id: str, text: str, encrypted: str | None, *, call: ResponsesCall, done: bool
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": item_id,
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": text}] if call.summaries and text else [],
    }
    if call.encrypted and encrypted:
        item["encrypted_content"] = encrypted
    if not done:
        item["status"] = "in_progress"
    return item


def message_item(item_id: str, text: str | None, *, status: str) -> dict[str, Any]:
    content = [] if text is None else [{"type": "output_text", "text": text, "annotations": []}]
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def call_item(
    item_id: str,
    call: ToolCall | None,
    *,
    name: str = "",
    call_id: str = "",
    arguments: str = "",
    status: str,
) -> dict[str, Any]:
    if call is not None:
        name, call_id, arguments = call.name, call.id, call.arguments_json
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "arguments": arguments,
        "call_id": call_id,
        "name": name,
    }


def status_of(response: Response) -> tuple[str, dict[str, Any] | None]:
    """``(status, incomplete_details)`` for a finished answer."""
    if response.finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if response.finish_reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def output_items(response: Response, base: str, call: ResponsesCall) -> list[dict[str, Any]]:
    """A whole answer's output items: its reasoning, its message, its calls."""
    items: list[dict[str, Any]] = []
    for index, part in enumerate(
        p for p in response.message.content if isinstance(p, ReasoningPart)
    ):
        items.append(
            reasoning_item(f"rs_{base}{index}", part.text, encrypted_of(part), call=call, done=True)
        )
    text = response.text
    if text or not response.tool_calls:
        status = "incomplete" if response.finish_reason == "length" else "completed"
        items.append(message_item(f"msg_{base}", text, status=status))
    for index, tool_call in enumerate(response.tool_calls):
        items.append(call_item(f"fc_{base}{index}", tool_call, status="completed"))
    return items


def response_json(
    call: ResponsesCall,
    *,
    id: str,
    created_at: int,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    usage: Usage | None = None,
    incomplete: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``response`` object."""
    body: dict[str, Any] = {
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": error,
        "incomplete_details": incomplete,
        "model": model,
        "output": output,
        "usage": usage_json(usage) if usage is not None else None,
    }
    body.update(call.echo)
    return body


# ---------------------------------------------------------------------- streams


class EventWriter:
    """The kernel's stream events as the Responses API's typed SSE events.

    Feed :meth:`start`, then :meth:`event` for each kernel event, then
    :meth:`finish` with the final response (or :meth:`fail`); each returns the SSE
    text to send. :attr:`final` is the last ``response`` object sent.
    """

    def __init__(self, call: ResponsesCall, *, id: str, created_at: int, model: str) -> None:
        self.call = call
        self.id = id
        self.base = id.removeprefix("resp_")
        self.created_at = created_at
        self.model = model
        self.sequence = 0
        self.items: list[dict[str, Any]] = []  # finished output items
        self.final: dict[str, Any] | None = None
        # the open item: kind, output index, id, text so far (or arguments)
        self._kind: str | None = None
        self._item_id = ""
        self._text: list[str] = []
        self._encrypted: str | None = None
        self._reasoning_index = -1
        # open function calls by the kernel's call index: (output index, item id,
        # call id, name, arguments so far)
        self._calls: dict[int, tuple[int, str, str, str, list[str]]] = {}
        self._ids = 0

    def _sse(self, kind: str, fields: dict[str, Any]) -> str:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return "event: " + kind + "\ndata: " + _dumps(payload) + "\n\n"

    def _response(self, status: str, **more: Any) -> dict[str, Any]:
        return response_json(
            self.call,
            id=self.id,
            created_at=self.created_at,
            model=self.model,
            status=status,
            output=list(self.items),
            **more,
        )

    def start(self) -> str:
        head = self._response("in_progress")
        return self._sse("response.created", {"response": head}) + self._sse(
            "response.in_progress", {"response": head}
        )

    def event(self, event: StreamEvent) -> str:
        kind = event.type
        if kind == "text":
            out = "" if self._kind == "message" else self._open_message()
            self._text.append(event.text)  # type: ignore[union-attr]
            return out + self._sse(
                "response.output_text.delta",
                {
                    "item_id": self._item_id,
                    "output_index": len(self.items),
                    "content_index": 0,
                    "delta": event.text,  # type: ignore[union-attr]
                    "logprobs": [],
                },
            )
        if kind == "tool_call":
            return self._call_delta(event)
        if kind == "reasoning":
            return self._reasoning_delta(event)
        return ""

    # -- messages

    def _open_message(self) -> str:
        out = self._close_all()
        self._kind, self._item_id, self._text = "message", f"msg_{self.base}", []
        index = len(self.items)
        return (
            out
            + self._sse(
                "response.output_item.added",
                {
                    "output_index": index,
                    "item": message_item(self._item_id, None, status="in_progress"),
                },
            )
            + self._sse(
                "response.content_part.added",
                {
                    "item_id": self._item_id,
                    "output_index": index,
                    "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": []},
                },
            )
        )

    # -- reasoning

    def _reasoning_delta(self, event: Any) -> str:
        out = ""
        if self._kind != "reasoning" or event.index != self._reasoning_index or event.redacted:
            if not (event.text or event.redacted or event.signature):
                return ""
            out = self._close_all()
            self._kind, self._reasoning_index = "reasoning", event.index
            self._ids += 1
            self._item_id, self._text, self._encrypted = f"rs_{self.base}{self._ids}", [], None
            item = reasoning_item(self._item_id, "", None, call=self.call, done=False)
            out += self._sse(
                "response.output_item.added", {"output_index": len(self.items), "item": item}
            )
        if event.redacted:
            self._encrypted = REDACTED_PREFIX + event.redacted
        elif event.signature:
            self._encrypted = event.signature
        if event.text:
            where = {"item_id": self._item_id, "output_index": len(self.items), "summary_index": 0}
            if self.call.summaries and not self._text:
                part = {"type": "summary_text", "text": ""}
                out += self._sse("response.reasoning_summary_part.added", {**where, "part": part})
            self._text.append(event.text)
            if self.call.summaries:
                out += self._sse(
                    "response.reasoning_summary_text.delta", {**where, "delta": event.text}
                )
        return out

    # -- function calls

    def _call_delta(self, event: Any) -> str:
        out = ""
        if event.index not in self._calls:
            if self._kind is not None:
                out = self._close()
            self._ids += 1
            item_id = f"fc_{self.base}{self._ids}"
            index = len(self.items) + len(self._calls)
            self._calls[event.index] = (index, item_id, event.id or item_id, event.name or "", [])
            out += self._sse(
                "response.output_item.added",
                {
                    "output_index": index,
                    "item": call_item(
                        item_id,
                        None,
                        name=event.name or "",
                        call_id=event.id or item_id,
                        status="in_progress",
                    ),
                },
            )
        index, item_id, _, _, arguments = self._calls[event.index]
        if event.arguments:
            arguments.append(event.arguments)
            out += self._sse(
                "response.function_call_arguments.delta",
                {"item_id": item_id, "output_index": index, "delta": event.arguments},
            )
        return out

    # -- closing

    def _close(self) -> str:
        """Close the open message or reasoning item (calls stay open to the end)."""
        kind, index = self._kind, len(self.items)
        if kind is None:
            return ""
        self._kind = None
        text = "".join(self._text)
        if kind == "message":
            item = message_item(self._item_id, text, status="completed")
            out = self._sse(
                "response.output_text.done",
                {
                    "item_id": self._item_id,
                    "output_index": index,
                    "content_index": 0,
                    "text": text,
                    "logprobs": [],
                },
            ) + self._sse(
                "response.content_part.done",
                {
                    "item_id": self._item_id,
                    "output_index": index,
                    "content_index": 0,
                    "part": item["content"][0],
                },
            )
        else:
            item = reasoning_item(self._item_id, text, self._encrypted, call=self.call, done=True)
            out = ""
            if self.call.summaries and text:
                out = self._sse(
                    "response.reasoning_summary_text.done",
                    {
                        "item_id": self._item_id,
                        "output_index": index,
                        "summary_index": 0,
                        "text": text,
                    },
                ) + self._sse(
                    "response.reasoning_summary_part.done",
                    {
                        "item_id": self._item_id,
                        "output_index": index,
                        "summary_index": 0,
                        "part": {"type": "summary_text", "text": text},
                    },
                )
        self.items.append(item)
        return out + self._sse("response.output_item.done", {"output_index": index, "item": item})

    def _close_all(self) -> str:
        out = self._close()
        for index, item_id, call_id, name, parts in self._calls.values():
            arguments = "".join(parts)
            item = call_item(
                item_id, None, name=name, call_id=call_id, arguments=arguments, status="completed"
            )
            self.items.append(item)
            out += self._sse(
                "response.function_call_arguments.done",
                {"item_id": item_id, "output_index": index, "arguments": arguments},
            ) + self._sse("response.output_item.done", {"output_index": index, "item": item})
        self._calls.clear()
        return out

    def finish(self, response: Response) -> str:
        """The closing events and ``response.completed`` (or ``.incomplete``)."""
        out = self._close_all()
        if not self.items:  # an empty answer is still a message
            out += self._open_message() + self._close()
        status, incomplete = status_of(response)
        self.final = self._response(status, usage=response.usage, incomplete=incomplete)
        return out + self._sse(f"response.{status}", {"response": self.final})

    def fail(self, failure: Failure) -> str:
        """``response.failed``: the items so far, and the error."""
        out = self._close_all()
        code = "rate_limit_exceeded" if failure.status == 429 else "server_error"
        self.final = self._response("failed", error={"code": code, "message": failure.message})
        return out + self._sse("response.failed", {"response": self.final})


__all__ = [
    "EXTRAS",
    "REDACTED_PREFIX",
    "EventWriter",
    "ResponsesCall",
    "call",
    "input_messages",
    "output_items",
    "response_json",
    "status_of",
    "usage_json",
]
