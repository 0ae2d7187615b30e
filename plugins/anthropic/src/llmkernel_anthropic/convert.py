"""A :class:`~llmkernel.types.ChatRequest` as an Anthropic Messages API body.

* system messages become the top-level ``system``;
* tool results (``role="tool"``) become ``tool_result`` blocks in a user message;
* consecutive messages of one role are merged into one (Anthropic alternates roles);
* an assistant's thinking (``ReasoningPart`` with its signature, or redacted) is
  sent back as ``thinking``/``redacted_thinking`` blocks before its text and
  ``tool_use`` blocks, as extended thinking with tools requires;
* structured output is a tool named after the format, forced with ``tool_choice``;
* prompt caching: a ``cache_control`` on a part, a message or a tool (and the
  ``cache_system``/``cache_tools`` settings) becomes a ``cache_control`` breakpoint
  on that block; the system prompt is then sent as a list of text blocks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from llmkernel.errors import InvalidRequestError
from llmkernel.types import (
    ChatRequest,
    FilePart,
    ImagePart,
    Message,
    ReasoningPart,
    ResponseFormat,
    TextPart,
    Tool,
    ToolChoice,
)
from llmkernel_http import split_data_url

if TYPE_CHECKING:
    from llmkernel_anthropic.settings import AnthropicSettings

#: thinking budgets for ``reasoning.effort`` (Anthropic's minimum budget is 1024).
EFFORT_BUDGETS: dict[str, int] = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}
MIN_THINKING_BUDGET = 1024

_TOOL_NAME = re.compile(r"[^a-zA-Z0-9_-]")

Block = dict[str, Any]


def cache_mark(ttl: str) -> Block:
    """A ``cache_control`` value: ephemeral, with ``ttl`` "1h" sent (5 minutes is
    Anthropic's default and is sent as no ttl)."""
    return {"type": "ephemeral", "ttl": "1h"} if ttl == "1h" else {"type": "ephemeral"}


def cache_control_of(item: object) -> Block | None:
    """The ``cache_control`` an item (part, message, tool) carries, if any: a
    mapping such as ``{"type": "ephemeral", "ttl": "1h"}``."""
    value = getattr(item, "cache_control", None)
    if isinstance(value, Mapping) and value:
        return dict(value)
    return None


def _marked(blocks: list[Block], item: object) -> list[Block]:
    """``blocks`` with ``item``'s cache_control on the last one."""
    mark = cache_control_of(item)
    if mark is not None and blocks:
        blocks[-1] = {**blocks[-1], "cache_control": mark}
    return blocks


def format_tool_name(request: ChatRequest) -> str | None:
    """The name of the tool that carries structured output, or None without one."""
    fmt = request.response_format
    if fmt is None or fmt.type == "text":
        return None
    name = _TOOL_NAME.sub("_", fmt.name or "response")[:64]
    return name or "response"


def thinking_budget(request: ChatRequest) -> int | None:
    """The thinking budget asked for, or None for no extended thinking."""
    reasoning = request.reasoning
    if reasoning is None:
        return None
    if reasoning.budget_tokens is not None:
        if reasoning.budget_tokens <= 0:
            return None
        return max(MIN_THINKING_BUDGET, reasoning.budget_tokens)
    if reasoning.effort is not None:
        return EFFORT_BUDGETS[reasoning.effort]
    return None


def chat_body(request: ChatRequest, settings: AnthropicSettings, *, stream: bool) -> dict[str, Any]:
    """The JSON body for ``POST /v1/messages``."""
    system, messages = convert_messages(request.messages)
    budget = thinking_budget(request)
    max_tokens = request.max_tokens
    if max_tokens is None:
        max_tokens = settings.default_max_tokens
        if budget is not None and max_tokens <= budget:
            # max_tokens counts thinking too and must exceed the budget
            max_tokens = budget + settings.default_max_tokens
    body: dict[str, Any] = {"model": request.model, "max_tokens": max_tokens}
    fmt_name = format_tool_name(request)
    if settings.cache_system and system:
        system[-1] = {**system[-1], "cache_control": cache_mark(settings.cache_system)}
    if budget is not None and fmt_name is not None:
        # thinking forbids forcing the tool, so ask for it in words
        note = f"Give your final answer by calling the {fmt_name} tool."
        system.append({"type": "text", "text": note})
    if any("cache_control" in block for block in system):
        body["system"] = system
    elif system:
        body["system"] = "\n\n".join(block["text"] for block in system)
    body["messages"] = messages
    if budget is not None:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.user:
        body["metadata"] = {"user_id": request.user}
    tools, tool_choice = convert_tools(request, thinking=budget is not None)
    if tools:
        if settings.cache_tools:
            tools[-1] = {**tools[-1], "cache_control": cache_mark(settings.cache_tools)}
        body["tools"] = tools
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
    if stream:
        body["stream"] = True
    for key, value in request.options.items():
        if key != "stream":  # the method decides that
            body[key] = value
    return body


# --------------------------------------------------------------------------- messages


def convert_messages(messages: tuple[Message, ...]) -> tuple[list[Block], list[dict[str, Any]]]:
    """``(system blocks, messages)`` with system (and developer) messages pulled out
    as text blocks and consecutive same-role messages merged."""
    system: list[Block] = []
    result: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if message.role in ("system", "developer"):
            blocks = [
                _marked([{"type": "text", "text": part.text}], part)[0]
                for part in message.content
                if isinstance(part, TextPart) and part.text
            ]
            system.extend(_marked(blocks, message))
            continue
        if message.role == "tool":
            role = "user"
            blocks = [_tool_result(message, index)]
        elif message.role == "assistant":
            role = "assistant"
            blocks = _assistant_blocks(message, index)
        else:
            role = "user"
            blocks = _user_blocks(message, index)
        blocks = _marked(blocks, message)
        if not blocks:
            continue
        if result and result[-1]["role"] == role:
            result[-1]["content"].extend(blocks)
        else:
            result.append({"role": role, "content": blocks})
    return system, result


def _user_blocks(message: Message, index: int) -> list[Block]:
    blocks: list[Block] = []
    for part in message.content:
        if isinstance(part, TextPart):
            if part.text:
                blocks.extend(_marked([{"type": "text", "text": part.text}], part))
        elif isinstance(part, ImagePart):
            blocks.extend(_marked([image_block(part, f"messages[{index}]")], part))
        elif isinstance(part, FilePart):
            blocks.extend(_marked([document_block(part)], part))
        # a user message has no thinking to send back
    return blocks


def _assistant_blocks(message: Message, index: int) -> list[Block]:
    thinking: list[Block] = []
    rest: list[Block] = []
    for part in message.content:
        if isinstance(part, ReasoningPart):
            if part.redacted:
                thinking.append({"type": "redacted_thinking", "data": part.redacted})
            elif part.signature:
                thinking.append(
                    {"type": "thinking", "thinking": part.text, "signature": part.signature}
                )
            # thinking without Anthropic's signature (from another provider) cannot
            # be sent back; Anthropic would refuse the whole request.
        elif isinstance(part, TextPart):
            if part.text:
                rest.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            rest.append(image_block(part, f"messages[{index}]"))
    for call in message.tool_calls:
        rest.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": dict(call.arguments)}
        )
    return thinking + rest


def _tool_result(message: Message, index: int) -> Block:
    if not message.tool_call_id:
        raise InvalidRequestError(
            f"messages[{index}]: a tool message needs the tool_call_id of the call it answers"
        )
    block: Block = {"type": "tool_result", "tool_use_id": message.tool_call_id}
    parts = [p for p in message.content if not isinstance(p, ReasoningPart)]
    if all(isinstance(p, TextPart) for p in parts):
        text = "".join(p.text for p in parts if isinstance(p, TextPart))
        if text:
            block["content"] = text
    else:
        content: list[Block] = []
        for part in parts:
            if isinstance(part, TextPart):
                if part.text:
                    content.append({"type": "text", "text": part.text})
            elif isinstance(part, ImagePart):
                content.append(image_block(part, f"messages[{index}]"))
        block["content"] = content
    return block


def image_block(part: ImagePart, field: str) -> Block:
    """An image content block: base64 ``data``, a ``data:`` URL, or a plain URL."""
    if part.data is not None:
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": part.media_type, "data": part.data},
        }
    url = part.url or ""
    try:
        inline = split_data_url(url)
    except ValueError as exc:
        raise InvalidRequestError(f"{field}: {exc}") from None
    if inline is not None:
        media_type, data = inline
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def document_block(part: FilePart) -> Block:
    """A ``document`` block (a PDF): base64 ``data`` or a URL."""
    if part.data is None:
        return {"type": "document", "source": {"type": "url", "url": part.url}}
    return {
        "type": "document",
        "source": {"type": "base64", "media_type": part.media_type, "data": part.data},
    }


# --------------------------------------------------------------------------- tools


def tool_spec(tool: Tool) -> Block:
    spec: Block = {"name": tool.name}
    if tool.description:
        spec["description"] = tool.description
    spec["input_schema"] = dict(tool.parameters)
    mark = cache_control_of(tool)
    if mark is not None:
        spec["cache_control"] = mark
    return spec


def format_tool(fmt: ResponseFormat, name: str) -> Block:
    schema: Mapping[str, Any] = fmt.schema or {"type": "object"}
    if fmt.type == "json_object":
        schema = {"type": "object"}
    return {
        "name": name,
        "description": "Give the final answer as this tool's input, in the required format.",
        "input_schema": dict(schema),
    }


def tool_choice_block(choice: ToolChoice) -> Block:
    if choice.mode == "required":
        return {"type": "any"}
    if choice.mode == "none":
        return {"type": "none"}
    if choice.mode == "tool":
        if not choice.name:
            raise InvalidRequestError("tool_choice: a named tool choice needs the tool's name")
        return {"type": "tool", "name": choice.name}
    return {"type": "auto"}


def convert_tools(request: ChatRequest, *, thinking: bool) -> tuple[list[Block], Block | None]:
    """``(tools, tool_choice)``. Structured output adds a tool named after the format
    and forces a tool: that one alone, or any tool when the caller's tools may be
    called instead. Extended thinking cannot be combined with a forced tool, so
    there the choice stays ``auto``."""
    tools = [tool_spec(t) for t in request.tools]
    choice = request.tool_choice
    name = format_tool_name(request)
    if name is None or request.response_format is None:
        if not tools:
            return [], None
        return tools, tool_choice_block(choice) if choice is not None else None
    tools.append(format_tool(request.response_format, name))
    if thinking:
        return tools, {"type": "auto"}
    if choice is not None and choice.mode == "tool" and choice.name and choice.name != name:
        return tools, tool_choice_block(choice)
    if request.tools and (choice is None or choice.mode in ("auto", "required")):
        return tools, {"type": "any"}
    return tools, {"type": "tool", "name": name}
