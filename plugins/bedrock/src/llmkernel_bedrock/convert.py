"""A :class:`~llmkernel.types.ChatRequest` as the JSON body of Bedrock's Converse
(``POST /model/{modelId}/converse``) and ConverseStream requests, and embedding
requests as InvokeModel bodies for Titan and Cohere models.

Converse's shapes (Bedrock Runtime API reference, ``Converse``): ``messages`` alternate
``user``/``assistant``, each with ``content`` blocks (``text``, ``image`` with
``format`` and ``source.bytes`` as base64, ``toolUse``, ``toolResult``,
``reasoningContent``, ``cachePoint``); ``system`` is a list of ``text`` blocks;
``inferenceConfig`` holds ``maxTokens``, ``temperature``, ``topP``,
``stopSequences``; ``toolConfig`` holds ``tools`` (``toolSpec`` with
``inputSchema.json``) and ``toolChoice`` (``auto``, ``any`` or ``tool``); model
specific fields (Claude's ``thinking``) go in ``additionalModelRequestFields``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping, Sequence
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
    TextPart,
)
from llmkernel_bedrock.models import base_model
from llmkernel_bedrock.settings import BedrockSettings
from llmkernel_http.wire import plain

__all__ = [
    "REASONING_BUDGETS",
    "build_converse_body",
    "cohere_embed_body",
    "embedding_family",
    "messages",
    "titan_embed_body",
]

Bad = Callable[[str], InvalidRequestError]

#: Thinking budgets (tokens) for an effort level, for Claude models (which take a
#: budget, at least 1024).
REASONING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
#: ``ChatRequest.options`` keys that are not Converse fields.
_OWN_OPTIONS = ("cache_points",)


def build_converse_body(
    request: ChatRequest, settings: BedrockSettings, *, provider: str
) -> dict[str, Any]:
    """The Converse (and ConverseStream: the same body) request for ``request``."""

    def bad(problem: str) -> InvalidRequestError:
        return InvalidRequestError(problem, provider=provider, model=request.model)

    cache = _cache_points(request, settings, bad)
    system: list[dict[str, Any]] = [
        {"text": m.text} for m in request.messages if m.role == "system" and m.text.strip()
    ]
    body: dict[str, Any] = {"messages": messages(request.messages, bad)}
    if not body["messages"]:
        raise bad("Bedrock needs at least one user message besides the system prompt")
    if "messages" in cache:
        body["messages"][-1]["content"].append({"cachePoint": {"type": "default"}})
    if system:
        if "system" in cache:
            system.append({"cachePoint": {"type": "default"}})
        body["system"] = system

    inference: dict[str, Any] = {}
    if request.max_tokens is not None:
        inference["maxTokens"] = request.max_tokens
    if request.temperature is not None:
        inference["temperature"] = request.temperature
    if request.top_p is not None:
        inference["topP"] = request.top_p
    if request.stop:
        inference["stopSequences"] = list(request.stop)
    if inference:
        body["inferenceConfig"] = inference

    tools = _tool_config(request, bad, cache_tools="tools" in cache)
    if tools is not None:
        body["toolConfig"] = tools

    fmt = request.response_format
    if fmt is not None and fmt.type == "json_schema":
        if not fmt.schema:
            raise bad("response_format json_schema needs a schema")
        body["outputConfig"] = {
            "textFormat": {
                "type": "json_schema",
                "structure": {
                    "jsonSchema": {"schema": json.dumps(plain(fmt.schema)), "name": fmt.name}
                },
            }
        }

    extra: dict[str, Any] = plain(settings.additional_model_request_fields)
    extra.update(reasoning_fields(request.reasoning, request.model))
    for key, value in request.options.items():
        if key in _OWN_OPTIONS:
            continue
        if key == "additionalModelRequestFields" and isinstance(value, Mapping):
            extra.update(plain(value))
        else:
            body[key] = plain(value)
    if extra:
        body["additionalModelRequestFields"] = extra
    return body


def _cache_points(request: ChatRequest, settings: BedrockSettings, bad: Bad) -> set[str]:
    raw = request.options.get("cache_points", settings.cache_points)
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list | tuple) or not all(
        p in ("system", "tools", "messages") for p in raw
    ):
        raise bad('options["cache_points"] must list some of "system", "tools", "messages"')
    return set(raw)


def reasoning_fields(reasoning: Reasoning | None, model: str) -> dict[str, Any]:
    """``additionalModelRequestFields`` asking ``model`` to think, or ``{}``.

    Claude models take ``thinking: {type: enabled, budget_tokens}`` (an effort becomes
    a budget from :data:`REASONING_BUDGETS`); Amazon Nova 2 models take
    ``reasoningConfig: {type: enabled, maxReasoningEffort}``. A zero budget or
    ``minimal`` effort on Nova turns thinking off.
    """
    if reasoning is None:
        return {}
    name = base_model(model)
    budget = reasoning.budget_tokens
    effort = reasoning.effort
    if name.startswith("anthropic."):
        if budget is None:
            budget = REASONING_BUDGETS.get(effort or "medium", 8192)
        if budget <= 0:
            return {"thinking": {"type": "disabled"}}
        return {"thinking": {"type": "enabled", "budget_tokens": max(1024, budget)}}
    if name.startswith("amazon.nova"):
        if budget == 0 or effort == "minimal":
            return {"reasoningConfig": {"type": "disabled"}}
        if effort is None:
            spend = budget or 0
            effort = "low" if spend <= 2048 else "medium" if spend <= 8192 else "high"
        return {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": effort}}
    return {}


def messages(items: Sequence[Message], bad: Bad) -> list[dict[str, Any]]:
    """Every non-system message in Converse's shape. Tool results become
    ``toolResult`` blocks of a ``user`` message, and consecutive messages of one
    role are merged (Converse wants user and assistant turns to alternate)."""
    out: list[dict[str, Any]] = []
    for message in items:
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message, bad)
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return out


def _blocks(message: Message, bad: Bad) -> list[dict[str, Any]]:
    if message.role == "tool":
        if not message.tool_call_id:
            raise bad("a tool message needs tool_call_id (the toolUseId it answers)")
        return [
            {
                "toolResult": {
                    "toolUseId": message.tool_call_id,
                    "content": [{"text": message.text}],
                }
            }
        ]
    blocks: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, TextPart):
            if part.text:
                blocks.append({"text": part.text})
        elif isinstance(part, ImagePart):
            blocks.append({"image": _image(part, bad)})
        elif isinstance(part, FilePart):
            raise bad("documents (a FilePart) are not sent to Bedrock yet: send the text instead")
        elif isinstance(part, ReasoningPart) and message.role == "assistant":
            blocks.append({"reasoningContent": _reasoning(part)})
    # Thinking goes first in an assistant turn, as the model produced it.
    blocks.sort(key=lambda b: "reasoningContent" not in b)
    for call in message.tool_calls:
        blocks.append(
            {"toolUse": {"toolUseId": call.id, "name": call.name, "input": plain(call.arguments)}}
        )
    return blocks


def _reasoning(part: ReasoningPart) -> dict[str, Any]:
    if part.redacted is not None:
        return {"redactedContent": part.redacted}
    text: dict[str, Any] = {"text": part.text}
    if part.signature is not None:
        text["signature"] = part.signature
    return {"reasoningText": text}


def _image(part: ImagePart, bad: Bad) -> dict[str, Any]:
    data, media_type = part.data, part.media_type
    url = part.url or ""
    if data is None and url.startswith("s3://"):
        fmt = _format_from_name(url)
        if fmt is None:
            raise bad(
                f"cannot tell the image format of {url!r}: name it .png, .jpeg, .gif or .webp"
            )
        return {"format": fmt, "source": {"s3Location": {"uri": url}}}
    if data is None and url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header.removeprefix("data:").split(";")[0]
        if ";base64" not in header or not data:
            raise bad("an image data URL must be data:<type>;base64,<data>")
    if data is None:
        raise bad(
            "Bedrock takes images as bytes (base64) or s3:// URLs and cannot fetch "
            f"{url[:60]!r}; download it and pass ImagePart(data=<base64>, media_type=...)"
        )
    fmt = _IMAGE_FORMATS.get((media_type or "").lower())
    if fmt is None:
        raise bad(f"Bedrock takes png, jpeg, gif or webp images, not {media_type!r}")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise bad("image data is not valid base64") from None
    return {"format": fmt, "source": {"bytes": data}}


def _format_from_name(url: str) -> str | None:
    suffix = url.rsplit(".", 1)[-1].lower()
    return {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "gif": "gif", "webp": "webp"}.get(suffix)


def _tool_config(request: ChatRequest, bad: Bad, *, cache_tools: bool) -> dict[str, Any] | None:
    if not request.tools:
        return None
    choice = request.tool_choice
    uses_tools = any(m.tool_calls or m.role == "tool" for m in request.messages)
    if choice is not None and choice.mode == "none" and not uses_tools:
        return None  # Converse has no "none": leave the tools out
    tools: list[dict[str, Any]] = []
    for tool in request.tools:
        spec: dict[str, Any] = {"name": tool.name, "inputSchema": {"json": plain(tool.parameters)}}
        if tool.description:
            spec["description"] = tool.description
        if tool.strict is not None:
            spec["strict"] = tool.strict
        tools.append({"toolSpec": spec})
    if cache_tools:
        tools.append({"cachePoint": {"type": "default"}})
    config: dict[str, Any] = {"tools": tools}
    if choice is not None and choice.mode == "required":
        config["toolChoice"] = {"any": {}}
    elif choice is not None and choice.mode == "tool":
        if not choice.name or choice.name not in {t.name for t in request.tools}:
            raise bad(f"tool_choice names {choice.name!r}, which is not among the tools")
        config["toolChoice"] = {"tool": {"name": choice.name}}
    elif choice is not None and choice.mode == "auto":
        config["toolChoice"] = {"auto": {}}
    return config


# --------------------------------------------------------------------------- embeddings


def embedding_family(model: str) -> str | None:
    """``"titan"`` or ``"cohere"`` for the embedding models InvokeModel serves, else None."""
    name = base_model(model)
    if name.startswith("amazon.titan-embed"):
        return "titan"
    if name.startswith("cohere.embed"):
        return "cohere"
    return None


def titan_embed_body(request: EmbeddingRequest, text: str) -> dict[str, Any]:
    """Titan Text Embeddings takes one ``inputText`` a call; V2 also ``dimensions``
    (1024, 512 or 256) and ``normalize``."""
    body: dict[str, Any] = {"inputText": text}
    if request.dimensions is not None:
        body["dimensions"] = request.dimensions
    body.update(plain(request.options))
    return body


def cohere_embed_body(
    request: EmbeddingRequest, texts: Sequence[str], settings: BedrockSettings
) -> dict[str, Any]:
    """Cohere Embed takes up to 96 ``texts`` with an ``input_type``."""
    body: dict[str, Any] = {"texts": list(texts), "input_type": settings.embedding_input_type}
    if request.dimensions is not None:
        body["output_dimension"] = request.dimensions  # Embed v4 only
    body.update(plain(request.options))
    return body
