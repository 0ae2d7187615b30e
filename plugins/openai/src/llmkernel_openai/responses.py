"""OpenAI's Responses API (``POST /responses``) as a chat wire: the request body for a
:class:`~llmkernel.types.ChatRequest`, the ``response`` object as a
:class:`~llmkernel.types.Response`, and the typed stream events as the kernel's.

Used by an ``openai`` provider with ``wire_api = "responses"`` (models served only
there, or reasoning that should carry over between turns). Built to OpenAI's API
reference, read 2026-12-07: "Create a model response"
(https://platform.openai.com/docs/api-reference/responses/create) and "Streaming
events" (https://platform.openai.com/docs/api-reference/responses-streaming).

The kernel keeps the conversation, so every request is stateless: ``store: false``,
the whole input each time, and the model's reasoning kept as encrypted content
(``include: ["reasoning.encrypted_content"]``); a thinking part's ``signature`` is
``<reasoning item id>:<encrypted_content>``, sent back as that reasoning item.
Thinking from another provider (no such signature) is not sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from llmkernel.errors import InvalidRequestError
from llmkernel.types import (
    ChatRequest,
    FilePart,
    FinishEvent,
    FinishReason,
    ImagePart,
    Message,
    MetadataEvent,
    Part,
    ReasoningDelta,
    ReasoningPart,
    Response,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageEvent,
)
from llmkernel_http import token_count
from llmkernel_openai.convert import reasoning_effort
from llmkernel_openai.parse import Malformed, parse_arguments, parsed_output

PATH = "/responses"


# ---------------------------------------------------------------------- request


def request_body(request: ChatRequest, *, stream: bool, provider: str = "") -> dict[str, Any]:
    """The ``POST /responses`` body for ``request``."""
    if request.stop:
        raise InvalidRequestError(
            "stop: OpenAI's Responses API has no stop sequences",
            provider=provider,
            model=request.model,
        )
    body: dict[str, Any] = {
        "model": request.model,
        "input": [item for m in request.messages for item in input_items(m)],
        "store": False,
    }
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": dict(t.parameters),
                "strict": bool(t.strict),
            }
            for t in request.tools
        ]
    choice = request.tool_choice
    if choice is not None:
        if choice.mode == "tool":
            body["tool_choice"] = {"type": "function", "name": choice.name}
        else:
            body["tool_choice"] = choice.mode
    if request.max_tokens is not None:
        body["max_output_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_schema":
        body["text"] = {
            "format": {
                "type": "json_schema",
                "name": fmt.name,
                "schema": dict(fmt.schema or {}),
                "strict": fmt.strict,
            }
        }
    elif fmt is not None and fmt.type == "json_object":
        body["text"] = {"format": {"type": "json_object"}}
    effort = reasoning_effort(request.reasoning)
    if effort is not None:
        body["reasoning"] = {"effort": effort, "summary": "auto"}
        body["include"] = ["reasoning.encrypted_content"]
    if request.user is not None:
        body["user"] = request.user
    if stream:
        body["stream"] = True
    for key, value in request.options.items():
        if key == "verbosity":  # Chat Completions' name; here it is text.verbosity
            body.setdefault("text", {})["verbosity"] = value
        elif key != "stream":
            body[key] = value
    return body


def input_items(message: Message) -> list[dict[str, Any]]:
    """One kernel message as Responses input items."""
    if message.role == "tool":
        return [
            {
                "type": "function_call_output",
                "call_id": message.tool_call_id or "",
                "output": message.text,
            }
        ]
    if message.role != "assistant":
        content = [item for p in message.content if (item := _input_part(p)) is not None]
        return [{"role": message.role, "content": content}]
    items: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, ReasoningPart) and part.signature and ":" in part.signature:
            item_id, _, encrypted = part.signature.partition(":")
            items.append(
                {
                    "type": "reasoning",
                    "id": item_id,
                    "summary": [{"type": "summary_text", "text": part.text}] if part.text else [],
                    "encrypted_content": encrypted,
                }
            )
    if message.text:
        items.append({"role": "assistant", "content": message.text})
    items.extend(
        {"type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments_json}
        for c in message.tool_calls
    )
    return items


def _input_part(part: Part) -> dict[str, Any] | None:
    if isinstance(part, TextPart):
        return {"type": "input_text", "text": part.text}
    if isinstance(part, ImagePart):
        url = part.url if part.url is not None else f"data:{part.media_type};base64,{part.data}"
        return {"type": "input_image", "image_url": url, "detail": part.detail or "auto"}
    if isinstance(part, FilePart):
        if part.url is not None:
            return {"type": "input_file", "file_url": part.url}
        return {
            "type": "input_file",
            "filename": part.filename or "document.pdf",
            "file_data": f"data:{part.media_type};base64,{part.data}",
        }
    return None


# ---------------------------------------------------------------------- answers


def usage_of(data: Any) -> Usage:
    if not isinstance(data, Mapping):
        return Usage()
    details = data.get("input_tokens_details")
    details = details if isinstance(details, Mapping) else {}
    output = data.get("output_tokens_details")
    output = output if isinstance(output, Mapping) else {}
    return Usage(
        input_tokens=token_count(data.get("input_tokens")),
        output_tokens=token_count(data.get("output_tokens")),
        cached_input_tokens=token_count(details.get("cached_tokens")),
        reasoning_tokens=token_count(output.get("reasoning_tokens")),
    )


def finish_of(data: Mapping[str, Any], *, has_calls: bool) -> FinishReason:
    if data.get("status") == "incomplete":
        details = data.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, Mapping) else None
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if has_calls else "stop"


def reasoning_of(item: Mapping[str, Any]) -> ReasoningPart:
    texts = [
        s.get("text", "")
        for s in item.get("summary") or item.get("content") or []
        if isinstance(s, Mapping) and isinstance(s.get("text"), str)
    ]
    encrypted = item.get("encrypted_content")
    signature = (
        f"{item.get('id', '')}:{encrypted}" if isinstance(encrypted, str) and encrypted else None
    )
    return ReasoningPart(text="\n\n".join(texts), signature=signature)


def call_of(item: Mapping[str, Any], index: int) -> ToolCall:
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise Malformed(f"output[{index}] is a function_call without a name")
    call_id = item.get("call_id")
    return ToolCall(
        id=call_id if isinstance(call_id, str) and call_id else f"call_{index}",
        name=name,
        arguments=parse_arguments(item.get("arguments"), name),
    )


def parse_response(data: Any, request: ChatRequest) -> Response:
    """A whole ``response`` object → Response. Raises :class:`Malformed`."""
    if not isinstance(data, Mapping) or not isinstance(data.get("output"), list):
        raise Malformed("expected a response object with an output list")
    parts: list[Part] = []
    calls: list[ToolCall] = []
    refusals: list[str] = []
    for index, item in enumerate(data["output"]):
        if not isinstance(item, Mapping):
            raise Malformed(f"output[{index}] is not an object")
        kind = item.get("type")
        if kind == "reasoning":
            parts.append(reasoning_of(item))
        elif kind == "message":
            for content in item.get("content") or []:
                if not isinstance(content, Mapping):
                    continue
                if content.get("type") == "output_text" and isinstance(content.get("text"), str):
                    parts.append(TextPart(text=content["text"]))
                elif content.get("type") == "refusal":
                    refusals.append(str(content.get("refusal") or ""))
        elif kind == "function_call":
            calls.append(call_of(item, index))
    text = "".join(p.text for p in parts if isinstance(p, TextPart))
    refusal = "".join(refusals) or None
    response_id, model = data.get("id"), data.get("model")
    return Response(
        message=Message(role="assistant", content=tuple(parts), tool_calls=tuple(calls)),
        finish_reason=finish_of(data, has_calls=bool(calls)),
        usage=usage_of(data.get("usage")),
        id=response_id if isinstance(response_id, str) else None,
        model=model if isinstance(model, str) else "",
        parsed=parsed_output(text, request.response_format, refusal),
        refusal=refusal,
    )


def failure_of(data: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(code, message)`` of a failed response (``status: failed``), else None."""
    if data.get("status") != "failed":
        return None
    error = data.get("error")
    error = error if isinstance(error, Mapping) else {}
    return str(error.get("code") or "server_error"), str(error.get("message") or "failed")


# ---------------------------------------------------------------------- streams


@attrs.define
class StreamParser:
    """Feed each decoded event (``type``, fields) to :meth:`feed`; the terminal
    event (``response.completed`` / ``.incomplete``) ends it with usage and finish.
    A ``response.failed`` or ``error`` event is returned by :meth:`failure`."""

    calls: dict[str, int] = attrs.field(factory=dict)  # item id -> kernel call index
    reasoning: dict[str, int] = attrs.field(factory=dict)  # item id -> thinking index
    done: bool = False
    refusal: list[str] = attrs.field(factory=list)

    def feed(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        kind = data.get("type")
        if kind == "response.created":
            response = data.get("response")
            response = response if isinstance(response, Mapping) else {}
            rid, model = response.get("id"), response.get("model")
            return [
                MetadataEvent(
                    id=rid if isinstance(rid, str) else None,
                    model=model if isinstance(model, str) else None,
                )
            ]
        if kind == "response.output_text.delta":
            delta = data.get("delta")
            return [TextDelta(text=delta)] if isinstance(delta, str) and delta else []
        if kind == "response.refusal.delta":
            self.refusal.append(str(data.get("delta") or ""))
            return []
        if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            delta = data.get("delta")
            index = self.reasoning.setdefault(str(data.get("item_id")), len(self.reasoning))
            return [ReasoningDelta(text=delta, index=index)] if isinstance(delta, str) else []
        if kind == "response.output_item.added":
            item = data.get("item")
            if isinstance(item, Mapping) and item.get("type") == "function_call":
                index = self.calls.setdefault(str(item.get("id")), len(self.calls))
                name, call_id = item.get("name"), item.get("call_id")
                return [
                    ToolCallDelta(
                        index=index,
                        id=call_id if isinstance(call_id, str) and call_id else f"call_{index}",
                        name=name if isinstance(name, str) else "",
                        arguments=str(item.get("arguments") or ""),
                    )
                ]
            return []
        if kind == "response.function_call_arguments.delta":
            known = self.calls.get(str(data.get("item_id")))
            delta = data.get("delta")
            if known is None or not isinstance(delta, str) or not delta:
                return []
            return [ToolCallDelta(index=known, arguments=delta)]
        if kind == "response.output_item.done":
            item = data.get("item")
            if isinstance(item, Mapping) and item.get("type") == "reasoning":
                part = reasoning_of(item)
                if part.signature:
                    index = self.reasoning.setdefault(str(item.get("id")), len(self.reasoning))
                    return [ReasoningDelta(signature=part.signature, index=index)]
            return []
        if kind in ("response.completed", "response.incomplete"):
            self.done = True
            response = data.get("response")
            response = response if isinstance(response, Mapping) else {}
            events: list[StreamEvent] = []
            if self.refusal:
                events.append(MetadataEvent(refusal="".join(self.refusal)))
            events.append(UsageEvent(usage=usage_of(response.get("usage"))))
            events.append(
                FinishEvent(finish_reason=finish_of(response, has_calls=bool(self.calls)))
            )
            return events
        return []

    @staticmethod
    def failure(data: Mapping[str, Any]) -> tuple[str, str] | None:
        """``(code, message)`` when the event reports a failure."""
        kind = data.get("type")
        if kind == "error":
            return str(data.get("code") or "server_error"), str(data.get("message") or "error")
        if kind == "response.failed":
            response = data.get("response")
            return failure_of(response if isinstance(response, Mapping) else {"status": "failed"})
        return None


__all__ = [
    "PATH",
    "StreamParser",
    "failure_of",
    "input_items",
    "parse_response",
    "request_body",
    "usage_of",
]
