"""Counting a chat request's input tokens.

OpenAI models: tiktoken with the model's encoding plus the chat format's overhead
as OpenAI's cookbook documents it ("How to count tokens with tiktoken"): 3 tokens
per message, 1 more for a ``name``, 3 priming the reply; tools with the cookbook's
per-function, per-property and per-enum constants. Images follow OpenAI's
documented tile rule (85 tokens, plus 170 per 512-pixel tile at high detail) and
make the count approximate, as do tool calls in the history and structured-output
schemas, whose rendering OpenAI does not document.

Other providers get an estimate, marked ``exact=False`` with a ``method`` saying
how it was made.
"""

from __future__ import annotations

import base64
import functools
import struct
from typing import TYPE_CHECKING, get_args

import attrs

from llmkernel.types import ChatRequest, ImagePart, ReasoningPart, Role, TextPart, TokenCount

if TYPE_CHECKING:
    import tiktoken

__all__ = [
    "IMAGE_BASE",
    "IMAGE_TILE",
    "ToolConstants",
    "count_chat",
    "estimate_chat",
    "image_tokens",
    "request_text",
]

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
IMAGE_BASE = 85
IMAGE_TILE = 170


@attrs.frozen(kw_only=True)
class ToolConstants:
    """The cookbook's tool constants (``num_tokens_for_tools``)."""

    func_init: int
    prop_init: int = 3
    prop_key: int = 3
    enum_init: int = -3
    enum_item: int = 3
    func_end: int = 12


O200K_TOOLS = ToolConstants(func_init=7)  # gpt-4o and gpt-4o-mini in the cookbook
CL100K_TOOLS = ToolConstants(func_init=10)  # gpt-3.5-turbo and gpt-4


def _image_size(part: ImagePart) -> tuple[int, int] | None:
    """Width and height from an inline PNG, GIF or JPEG header, else ``None``."""
    if part.data is None:
        return None
    try:
        head = base64.b64decode(part.data[:65536] + "=" * (-len(part.data[:65536]) % 4))
    except ValueError:
        return None
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        width, height = struct.unpack(">II", head[16:24])
        return int(width), int(height)
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        width, height = struct.unpack("<HH", head[6:10])
        return int(width), int(height)
    if head[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(head):
            if head[i] != 0xFF:
                i += 1
                continue
            marker = head[i + 1]
            length = struct.unpack(">H", head[i + 2 : i + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", head[i + 5 : i + 9])
                return int(width), int(height)
            i += 2 + length
    return None


def image_tokens(part: ImagePart) -> int:
    """OpenAI's documented cost of an image: 85 at low detail; at high detail the
    image is fit in 2048x2048, its short side scaled to 768, and each 512-pixel tile
    costs 170 more. Unknown sizes count as one 1024x1024 image (four tiles)."""
    if part.detail == "low":
        return IMAGE_BASE
    size = _image_size(part) or (1024, 1024)
    width, height = float(size[0]), float(size[1])
    if max(width, height) > 2048:
        scale = 2048 / max(width, height)
        width, height = width * scale, height * scale
    if min(width, height) > 768:
        scale = 768 / min(width, height)
        width, height = width * scale, height * scale
    tiles = -(-int(width) // 512) * -(-int(height) // 512)
    return IMAGE_BASE + IMAGE_TILE * tiles


def _strip_period(text: str) -> str:
    return text[:-1] if text.endswith(".") else text


def _tools_tokens(request: ChatRequest, encoding: tiktoken.Encoding, k: ToolConstants) -> int:
    if not request.tools:
        return 0
    total = 0
    for tool in request.tools:
        total += k.func_init
        total += len(encoding.encode_ordinary(f"{tool.name}:{_strip_period(tool.description)}"))
        properties = tool.parameters.get("properties") or {}
        if properties:
            total += k.prop_init
            for key, schema in properties.items():
                total += k.prop_key
                enum = schema.get("enum") if isinstance(schema, dict) else None
                if enum:
                    total += k.enum_init
                    for item in enum:
                        total += k.enum_item + len(encoding.encode_ordinary(str(item)))
                p_type = schema.get("type", "") if isinstance(schema, dict) else ""
                p_desc = schema.get("description", "") if isinstance(schema, dict) else ""
                line = f"{key}:{p_type}:{_strip_period(str(p_desc))}"
                total += len(encoding.encode_ordinary(line))
    return total + k.func_end


@functools.lru_cache(maxsize=32)
def _role_tokens(encoding: tiktoken.Encoding) -> dict[str, int]:
    """Each role's tokens in ``encoding`` (the roles are a fixed set)."""
    return {role: len(encoding.encode_ordinary(role)) for role in get_args(Role)}


def count_chat(
    request: ChatRequest, encoding: tiktoken.Encoding, *, tools: ToolConstants
) -> TokenCount:
    """The input tokens of ``request`` with ``encoding`` and the chat overhead."""
    encode = encoding.encode_ordinary  # text as text: special tokens are not parsed
    roles = _role_tokens(encoding)
    exact = True
    total = REPLY_PRIMING
    for message in request.messages:
        role = roles.get(message.role)
        if role is None:  # a Message built directly may carry any role
            role = len(encode(message.role))
        total += TOKENS_PER_MESSAGE + role
        if message.name:
            total += TOKENS_PER_NAME + len(encode(message.name))
        for part in message.content:
            if isinstance(part, TextPart):
                total += len(encode(part.text))
            elif isinstance(part, ImagePart):
                total += image_tokens(part)
                exact = False
            elif isinstance(part, ReasoningPart):
                continue  # thinking is not sent back to OpenAI models as text
        for call in message.tool_calls:
            total += len(encode(call.name)) + len(encode(call.arguments_json))
            exact = False
        if message.tool_call_id:
            exact = False
    total += _tools_tokens(request, encoding, tools)
    if request.response_format is not None and request.response_format.schema is not None:
        import json

        total += len(encode(json.dumps(request.response_format.schema)))
        exact = False
    method = f"tiktoken {encoding.name} with OpenAI's chat overhead"
    if not exact:
        method += " (images, tool calls or schemas estimated)"
    return TokenCount(tokens=total, exact=exact, method=method)


def request_text(request: ChatRequest) -> tuple[str, int]:
    """All of a request's text joined, and its number of images."""
    pieces: list[str] = []
    images = 0
    for message in request.messages:
        for part in message.content:
            if isinstance(part, TextPart):
                pieces.append(part.text)
            elif isinstance(part, ImagePart):
                images += 1
        for call in message.tool_calls:
            pieces.append(call.name)
            pieces.append(call.arguments_json)
    for tool in request.tools:
        import json

        pieces.append(f"{tool.name} {tool.description} {json.dumps(tool.parameters)}")
    return "\n".join(pieces), images


def estimate_chat(
    request: ChatRequest, *, encoding: tiktoken.Encoding | None, label: str
) -> TokenCount:
    """An estimate: the text's tokens in ``encoding`` when one is at hand, else about
    four characters a token; plus the chat overhead and OpenAI's image rule."""
    text, images = request_text(request)
    if encoding is not None:
        tokens = len(encoding.encode_ordinary(text))
        how = f"{encoding.name} tokens"
    else:
        tokens = -(-len(text) // 4)
        how = "about 4 characters per token"
    tokens += TOKENS_PER_MESSAGE * len(request.messages) + REPLY_PRIMING
    tokens += images * (IMAGE_BASE + 4 * IMAGE_TILE)
    return TokenCount(tokens=tokens, exact=False, method=f"estimate: {how}{label}")
