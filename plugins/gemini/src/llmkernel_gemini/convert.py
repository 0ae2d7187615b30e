"""A :class:`~llmkernel.types.ChatRequest` as a Gemini ``generateContent`` body.

* system messages become ``systemInstruction``; the rest ``contents`` with roles
  ``user`` and ``model``;
* an assistant's tool calls are ``functionCall`` parts (their ``thoughtSignature``
  sent back on the same part); tool results are ``functionResponse`` parts, the
  results of one turn together in one ``user`` content, in order;
* reasoning kept from an earlier answer goes back as ``thought`` parts with their
  signature; a signature Gemini put on an answer's text part (kept as a
  :class:`ReasoningPart` without text) goes back on that message's text;
* images and documents (PDF) are ``inlineData`` (base64) or ``fileData`` (a URL);
* structured output is ``responseMimeType`` plus ``responseSchema`` (or
  ``responseJsonSchema``), thinking is ``thinkingConfig``.

Call ids are never sent: Gemini matches a ``functionResponse`` to its call by name
and order, and the ids the kernel holds may be ones this plugin made up.
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

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
from llmkernel_gemini.schema import to_openapi

if TYPE_CHECKING:
    from llmkernel_gemini.settings import SchemaFormat

#: thinking budgets (tokens) for each ``reasoning.effort``; 512 is the smallest
#: budget every 2.5 model accepts (Pro 128+, Flash 0+, Flash-Lite 512+).
EFFORT_BUDGETS = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576}

#: image types ``mimetypes`` may not know on every platform
_IMAGE_TYPES = {
    ".webp": "image/webp",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
}

_TOOL_CHOICE_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}


def model_path(model: str) -> str:
    """The resource name in the URL: ``models/<id>``; names with a collection
    (``models/x``, ``tunedModels/y``) are kept as they are."""
    if not model or any(c in model for c in "?#:% ") or model.startswith("/"):
        raise InvalidRequestError(f"not a Gemini model name: {model!r}", model=model)
    return model if "/" in model else f"models/{model}"


def chat_body(request: ChatRequest, *, schema_format: SchemaFormat = "openapi") -> dict[str, Any]:
    """The JSON body for ``generateContent``/``streamGenerateContent``."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    for index, message in enumerate(request.messages):
        where = f"messages[{index}]"
        if message.role in ("system", "developer"):
            system.extend(_user_parts(message, where))
        elif message.role == "user":
            contents.append({"role": "user", "parts": _user_parts(message, where)})
        elif message.role == "assistant":
            for call in message.tool_calls:
                call_names[call.id] = call.name
            parts = _model_parts(message)
            if parts:
                contents.append({"role": "model", "parts": parts})
        else:  # tool
            part = _function_response(message, call_names, where)
            previous = contents[-1] if contents else None
            if (
                previous is not None
                and previous["role"] == "user"
                and all("functionResponse" in p for p in previous["parts"])
            ):
                previous["parts"].append(part)
            else:
                contents.append({"role": "user", "parts": [part]})

    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    if request.tools:
        body["tools"] = [
            {"functionDeclarations": [_declaration(t, schema_format) for t in request.tools]}
        ]
    if request.tool_choice is not None:
        body["toolConfig"] = {"functionCallingConfig": _calling_config(request.tool_choice)}
    generation = _generation_config(request, schema_format)
    if generation:
        body["generationConfig"] = generation
    _merge_options(body, request.options)
    return body


# ----------------------------------------------------------------------------- parts


def _user_parts(message: Message, where: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, TextPart):
            parts.append({"text": part.text})
        elif isinstance(part, ImagePart):
            parts.append(image_part(part, where))
        elif isinstance(part, FilePart):
            parts.append(file_part(part))
        # reasoning in a user or system message means nothing to Gemini: skipped
    if not parts:
        parts.append({"text": ""})
    return parts


def image_part(part: ImagePart, where: str = "image") -> dict[str, Any]:
    """``inlineData`` for base64 data, ``fileData`` for a URL."""
    if part.data is not None:
        return {"inlineData": {"mimeType": part.media_type, "data": part.data}}
    url = part.url or ""
    url_path = urlsplit(url).path
    suffix = url_path[url_path.rfind(".") :].lower() if "." in url_path else ""
    mime = part.media_type or _IMAGE_TYPES.get(suffix) or mimetypes.guess_type(url_path)[0]
    if not mime:
        raise InvalidRequestError(
            f"{where}: cannot tell the image type of {url[:200]!r} from its extension; "
            "give the ImagePart a media_type (e.g. 'image/png')"
        )
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def file_part(part: FilePart) -> dict[str, Any]:
    """A document (PDF): ``inlineData`` for base64 data, ``fileData`` for a URL."""
    if part.data is not None:
        return {"inlineData": {"mimeType": part.media_type, "data": part.data}}
    return {"fileData": {"mimeType": part.media_type, "fileUri": part.url}}


def _model_parts(message: Message) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    pending_signature: str | None = None
    for part in message.content:
        if isinstance(part, ReasoningPart):
            if part.text:
                thought: dict[str, Any] = {"text": part.text, "thought": True}
                if part.signature:
                    thought["thoughtSignature"] = part.signature
                parts.append(thought)
            elif part.signature:
                pending_signature = part.signature
        elif isinstance(part, TextPart):
            text: dict[str, Any] = {"text": part.text}
            if pending_signature:
                text["thoughtSignature"] = pending_signature
                pending_signature = None
            parts.append(text)
        elif isinstance(part, ImagePart):
            parts.append(image_part(part))
    for call in message.tool_calls:
        function_call: dict[str, Any] = {
            "functionCall": {"name": call.name, "args": dict(call.arguments)}
        }
        if call.signature:
            function_call["thoughtSignature"] = call.signature
        parts.append(function_call)
    if pending_signature:
        parts.append({"text": "", "thoughtSignature": pending_signature})
    return parts


def _function_response(
    message: Message, call_names: Mapping[str, str], where: str
) -> dict[str, Any]:
    name = message.name or call_names.get(message.tool_call_id or "")
    if not name:
        raise InvalidRequestError(
            f"{where}: Gemini needs the function name of tool result "
            f"{message.tool_call_id!r}: no earlier assistant message made that call; "
            "set the tool message's name"
        )
    text = message.text
    try:
        decoded = json.loads(text)
    except ValueError:
        decoded = None
    response = decoded if isinstance(decoded, dict) else {"result": text}
    return {"functionResponse": {"name": name, "response": response}}


# ----------------------------------------------------------------------------- tools


def _declaration(tool: Tool, schema_format: SchemaFormat) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": tool.name}
    if tool.description:
        declaration["description"] = tool.description
    params = dict(tool.parameters)
    if schema_format == "json_schema":
        declaration["parametersJsonSchema"] = params
    elif params.get("properties"):
        # Gemini refuses an object schema with no properties in ``parameters``
        declaration["parameters"] = to_openapi(params)
    return declaration


def _calling_config(choice: ToolChoice) -> dict[str, Any]:
    config: dict[str, Any] = {"mode": _TOOL_CHOICE_MODES[choice.mode]}
    if choice.mode == "tool":
        if not choice.name:
            raise InvalidRequestError("tool_choice: a named tool choice needs the tool's name")
        config["allowedFunctionNames"] = [choice.name]
    return config


# ----------------------------------------------------------------------------- config


def _generation_config(request: ChatRequest, schema_format: SchemaFormat) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.max_tokens is not None:
        config["maxOutputTokens"] = request.max_tokens
    if request.stop:
        config["stopSequences"] = list(request.stop)
    if request.response_format is not None:
        config.update(_response_format(request.response_format, schema_format))
    if request.reasoning is not None:
        thinking = thinking_config(request.reasoning)
        if thinking:
            config["thinkingConfig"] = thinking
    return config


def _response_format(fmt: ResponseFormat, schema_format: SchemaFormat) -> dict[str, Any]:
    if fmt.type == "text":
        return {}
    config: dict[str, Any] = {"responseMimeType": "application/json"}
    if fmt.type == "json_schema":
        if fmt.schema is None:
            raise InvalidRequestError("response_format: json_schema needs a schema")
        if schema_format == "json_schema":
            config["responseJsonSchema"] = dict(fmt.schema)
        else:
            config["responseSchema"] = to_openapi(fmt.schema)
    return config


def thinking_config(reasoning: Reasoning) -> dict[str, Any]:
    """``thinkingConfig`` for ``reasoning``: an explicit budget wins over an effort."""
    if reasoning.budget_tokens is not None:
        budget = reasoning.budget_tokens
    elif reasoning.effort is not None:
        budget = EFFORT_BUDGETS[reasoning.effort]
    else:
        return {}
    config: dict[str, Any] = {"thinkingBudget": budget}
    if budget != 0:
        config["includeThoughts"] = True
    return config


def _merge_options(body: dict[str, Any], options: Mapping[str, Any]) -> None:
    """Request ``options`` are Gemini body fields (``safetySettings``,
    ``cachedContent``...); a ``generationConfig`` table is merged key by key."""
    for key, value in options.items():
        if key == "generationConfig" and isinstance(value, Mapping):
            body.setdefault("generationConfig", {}).update(value)
        else:
            body[key] = value


# ----------------------------------------------------------------------------- embeddings


def embed_request(model: str, text: str, request: EmbeddingRequest) -> dict[str, Any]:
    """One ``EmbedContentRequest``: the body of ``embedContent``, or one item of a
    ``batchEmbedContents`` body."""
    item: dict[str, Any] = {"model": model_path(model), "content": {"parts": [{"text": text}]}}
    if request.dimensions is not None:
        item["outputDimensionality"] = request.dimensions
    for option, field in (("task_type", "taskType"), ("title", "title")):
        value = request.options.get(option, request.options.get(field))
        if value is not None:
            item[field] = value
    return item


def batch_body(model: str, texts: Sequence[str], request: EmbeddingRequest) -> dict[str, Any]:
    return {"requests": [embed_request(model, t, request) for t in texts]}
