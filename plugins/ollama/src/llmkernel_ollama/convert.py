"""A :class:`~llmkernel.types.ChatRequest` as the JSON body of Ollama's ``POST /api/chat``.

Ollama's shapes: a message is ``{"role", "content": str, "images": [base64...],
"thinking": str, "tool_calls": [...], "tool_name": str}``; tools are OpenAI-style
``{"type": "function", "function": {...}}``; sampling settings go in ``options``
(``temperature``, ``top_p``, ``num_predict``, ``stop``, ``seed``, ``num_ctx``...);
structured output is ``format`` (``"json"`` or a JSON schema); thinking is ``think``
(``true``/``false``, or ``"low"``/``"medium"``/``"high"`` for gpt-oss).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llmkernel.errors import InvalidRequestError
from llmkernel.types import (
    ChatRequest,
    FilePart,
    ImagePart,
    Message,
    Reasoning,
    ReasoningPart,
    Tool,
)
from llmkernel_http.wire import plain
from llmkernel_ollama.models import has_leveled_thinking

if TYPE_CHECKING:
    from llmkernel_ollama.settings import OllamaSettings

#: Keys of ``ChatRequest.options`` that go at the top of the body; every other key
#: is a model option and goes in ``options`` (``seed``, ``top_k``, ``num_ctx``...).
TOP_LEVEL_OPTIONS = ("keep_alive", "think", "format")

Bad = Callable[[str], InvalidRequestError]


def chat_body(
    request: ChatRequest, settings: OllamaSettings, *, stream: bool, provider: str
) -> dict[str, Any]:
    """The ``/api/chat`` body for ``request``; raises ``InvalidRequestError`` for what
    Ollama cannot take (image URLs, an unknown forced tool)."""

    def bad(problem: str) -> InvalidRequestError:
        return InvalidRequestError(problem, provider=provider, model=request.model)

    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages(request.messages, bad),
        "stream": stream,
    }
    tools = _tools(request, bad)
    if tools:
        body["tools"] = tools
    if request.response_format is not None:
        if request.response_format.type == "json_object":
            body["format"] = "json"
        elif request.response_format.type == "json_schema":
            if not request.response_format.schema:
                raise bad("response_format json_schema needs a schema")
            body["format"] = plain(request.response_format.schema)
    think = think_value(request.reasoning, request.model)
    if think is not None:
        body["think"] = think
    if settings.keep_alive is not None:
        body["keep_alive"] = settings.keep_alive

    options: dict[str, Any] = plain(settings.model_options)
    if settings.num_ctx is not None:
        options["num_ctx"] = settings.num_ctx
    if request.temperature is not None:
        options["temperature"] = request.temperature
    if request.top_p is not None:
        options["top_p"] = request.top_p
    if request.max_tokens is not None:
        options["num_predict"] = request.max_tokens
    if request.stop:
        options["stop"] = list(request.stop)
    for key, value in request.options.items():
        if key in TOP_LEVEL_OPTIONS:
            body[key] = plain(value)
        elif key == "options":
            if not isinstance(value, Mapping):
                raise bad("options['options'] must be a mapping of Ollama model options")
            options.update(plain(value))
        else:
            options[key] = plain(value)
    if options:
        body["options"] = options
    return body


def messages(items: Sequence[Message], bad: Bad) -> list[dict[str, Any]]:
    """Every message in Ollama's shape. A tool result carries ``tool_name``, looked
    up from the assistant call it answers when the message has no ``name``."""
    names: dict[str, str] = {}
    result = []
    for message in items:
        for call in message.tool_calls:
            names[call.id] = call.name
        result.append(_message(message, names, bad))
    return result


def _message(message: Message, names: Mapping[str, str], bad: Bad) -> dict[str, Any]:
    # Ollama knows no developer role: it is a system instruction there
    role: str = message.role
    if role == "developer":
        role = "system"
    out: dict[str, Any] = {"role": role, "content": message.text}
    if any(isinstance(part, FilePart) for part in message.content):
        raise bad("Ollama's chat API takes no documents (a FilePart): send the text instead")
    images = [_image(part, bad) for part in message.content if isinstance(part, ImagePart)]
    if images:
        out["images"] = images
    if message.role == "assistant":
        thinking = "".join(p.text for p in message.content if isinstance(p, ReasoningPart))
        if thinking:
            out["thinking"] = thinking
        if message.tool_calls:
            out["tool_calls"] = [
                {
                    "id": call.id,
                    "function": {
                        "index": index,
                        "name": call.name,
                        "arguments": plain(call.arguments),
                    },
                }
                for index, call in enumerate(message.tool_calls)
            ]
    elif message.role == "tool":
        name = message.name or names.get(message.tool_call_id or "")
        if name:
            out["tool_name"] = name
        if message.tool_call_id:
            out["tool_call_id"] = message.tool_call_id
    return out


def _image(part: ImagePart, bad: Bad) -> str:
    if part.data is not None:
        return part.data
    url = part.url or ""
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        if ";base64" in header and data:
            return data
        raise bad("an image data URL must be data:<type>;base64,<data>")
    raise bad(
        "Ollama takes images only inline as base64 and cannot fetch an image URL; "
        "download the image and pass it as ImagePart(data=<base64>, media_type=...) "
        "or a data: URL"
    )


def _tools(request: ChatRequest, bad: Bad) -> list[dict[str, Any]]:
    """Ollama has no ``tool_choice``: ``none`` sends no tools; ``required`` sends them
    all (the model may still answer in text); a named tool sends only that tool."""
    tools: Sequence[Tool] = request.tools
    choice = request.tool_choice
    if not tools or (choice is not None and choice.mode == "none"):
        return []
    if choice is not None and choice.mode == "tool":
        tools = [t for t in tools if t.name == choice.name]
        if not tools:
            raise bad(f"tool_choice names {choice.name!r}, which is not among the tools")
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": plain(tool.parameters),
            },
        }
        for tool in tools
    ]


def think_value(reasoning: Reasoning | None, model: str) -> bool | str | None:
    """``think`` for ``reasoning``: a level for gpt-oss (which cannot stop thinking),
    ``true``/``false`` for other thinking models; ``None`` leaves the server default.

    ``effort="minimal"`` and ``budget_tokens=0`` turn thinking off where possible;
    a budget picks gpt-oss's level (up to 2048 low, up to 8192 medium, else high)
    since Ollama has no thinking budget.
    """
    if reasoning is None:
        return None
    leveled = has_leveled_thinking(model)
    if reasoning.effort is not None:
        if leveled:
            return "low" if reasoning.effort == "minimal" else reasoning.effort
        return reasoning.effort != "minimal"
    if reasoning.budget_tokens is not None:
        budget = reasoning.budget_tokens
        if not leveled:
            return budget > 0
        if budget <= 2048:
            return "low"
        return "medium" if budget <= 8192 else "high"
    return None if leveled else True
