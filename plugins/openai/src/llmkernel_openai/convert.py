"""ChatRequest / EmbeddingRequest → OpenAI Chat Completions and Embeddings JSON bodies."""

from __future__ import annotations

from typing import Any

from llmkernel.errors import InvalidRequestError
from llmkernel.types import (
    ChatRequest,
    EmbeddingRequest,
    FilePart,
    ImagePart,
    Message,
    Reasoning,
    ReasoningPart,
    ResponseFormat,
    TextPart,
    Tool,
    ToolChoice,
)
from llmkernel_openai.models import capabilities_for, is_reasoning_model


def chat_body(
    request: ChatRequest,
    *,
    stream: bool,
    send_reasoning: bool = False,
    provider: str = "",
    max_tokens_field: str | None = None,
) -> dict[str, Any]:
    """The ``POST /chat/completions`` body for ``request``.

    ``max_tokens_field`` names the key for ``max_tokens``: OpenAI's own API wants
    ``max_completion_tokens`` (``max_tokens`` is deprecated there and refused by
    reasoning models); compatible servers mostly want ``max_tokens``. ``None``:
    ``max_completion_tokens`` for OpenAI reasoning models, else ``max_tokens``.

    ``request.options`` are merged in last, unchanged (``parallel_tool_calls``,
    ``seed``, ``service_tier``...).
    """
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [message(m, send_reasoning=send_reasoning) for m in request.messages],
    }
    if request.tools:
        body["tools"] = [tool(t) for t in request.tools]
    if request.tool_choice is not None:
        body["tool_choice"] = tool_choice(
            request.tool_choice, provider=provider, model=request.model
        )
    if request.max_tokens is not None:
        key = max_tokens_field or (
            "max_completion_tokens" if is_reasoning_model(request.model) else "max_tokens"
        )
        body[key] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop"] = list(request.stop)
    if request.response_format is not None and request.response_format.type != "text":
        body["response_format"] = response_format(request.response_format)
    effort = reasoning_effort(request.reasoning)
    if effort is not None and _may_reason(request.model):
        body["reasoning_effort"] = effort
    if request.user is not None:
        body["user"] = request.user
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    body.update(request.options)
    return body


def message(msg: Message, *, send_reasoning: bool = False) -> dict[str, Any]:
    """One message in OpenAI's shape."""
    if msg.role == "tool":
        return {"role": "tool", "tool_call_id": msg.tool_call_id or "", "content": msg.text}
    out: dict[str, Any] = {"role": msg.role}
    if msg.role == "assistant":
        text = msg.text
        out["content"] = text if text or not msg.tool_calls else None
        if msg.tool_calls:
            out["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments_json},
                }
                for call in msg.tool_calls
            ]
        reasoning = "".join(p.text for p in msg.content if isinstance(p, ReasoningPart))
        if send_reasoning and reasoning:
            out["reasoning_content"] = reasoning
    elif msg.role == "user" and any(isinstance(p, ImagePart | FilePart) for p in msg.content):
        out["content"] = [part for p in msg.content if (part := content_part(p)) is not None]
    else:
        out["content"] = msg.text
    if msg.name:
        out["name"] = msg.name
    return out


def content_part(part: TextPart | ImagePart | FilePart | ReasoningPart) -> dict[str, Any] | None:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, FilePart):
        return file_part(part)
    if isinstance(part, ImagePart):
        url = part.url if part.url is not None else f"data:{part.media_type};base64,{part.data}"
        image: dict[str, Any] = {"url": url}
        if part.detail:
            image["detail"] = part.detail
        return {"type": "image_url", "image_url": image}
    return None  # reasoning is not user content


def file_part(part: FilePart) -> dict[str, Any]:
    """A PDF as Chat Completions' ``file`` content part (base64 ``file_data``; the
    API takes no file URL and only PDFs)."""
    if part.data is None:
        raise InvalidRequestError(
            f"OpenAI Chat Completions takes a file as data, not by URL ({part.url!r}): "
            "download it and send FilePart(data=...)"
        )
    file: dict[str, Any] = {"file_data": f"data:{part.media_type};base64,{part.data}"}
    file["filename"] = part.filename or "document.pdf"
    return {"type": "file", "file": file}


def tool(spec: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": spec.name}
    if spec.description:
        function["description"] = spec.description
    function["parameters"] = dict(spec.parameters)
    if spec.strict is not None:
        function["strict"] = spec.strict
    return {"type": "function", "function": function}


def tool_choice(choice: ToolChoice, *, provider: str = "", model: str = "") -> Any:
    if choice.mode == "tool":
        if not choice.name:
            raise InvalidRequestError(
                "tool_choice mode 'tool' needs the tool's name", provider=provider, model=model
            )
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode


def response_format(fmt: ResponseFormat) -> dict[str, Any]:
    if fmt.type == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {
                "name": fmt.name,
                "schema": dict(fmt.schema or {}),
                "strict": fmt.strict,
            },
        }
    return {"type": fmt.type}


def reasoning_effort(reasoning: Reasoning | None) -> str | None:
    """``reasoning.effort``, or an effort level for a ``budget_tokens`` (OpenAI takes
    no budget): 0 → minimal, up to 2048 → low, up to 8192 → medium, more → high."""
    if reasoning is None:
        return None
    if reasoning.effort is not None:
        return reasoning.effort
    budget = reasoning.budget_tokens
    if budget is None:
        return None
    if budget == 0:
        return "minimal"
    if budget <= 2048:
        return "low"
    if budget <= 8192:
        return "medium"
    return "high"


def _may_reason(model: str) -> bool:
    """False only for well-known models that reject ``reasoning_effort`` (gpt-4o...)."""
    known = capabilities_for(model)
    return known is None or known.reasoning


def embedding_body(request: EmbeddingRequest, inputs: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {"model": request.model, "input": inputs}
    if request.dimensions is not None:
        body["dimensions"] = request.dimensions
    body.update(request.options)
    return body
