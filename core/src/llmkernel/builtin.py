"""The kernel's own hook implementations, registered first in every kernel.

Each runs last, so any plugin can replace the default ordering and token estimate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel.hookspecs import hookimpl
from llmkernel.types import ImagePart, TextPart, TokenCount

if TYPE_CHECKING:
    from llmkernel.routing import Candidate
    from llmkernel.types import ChatRequest

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4
IMAGE_TOKENS = 85


@hookimpl(trylast=True)
def select_provider(candidates: list[Candidate]) -> list[Candidate]:
    """Config order: the first candidate first, the rest as fallbacks."""
    return candidates


@hookimpl(trylast=True)
def count_tokens(request: ChatRequest) -> TokenCount:
    """A rough estimate (about four characters a token) when nothing better is
    installed; marked approximate."""
    chars = 0
    images = 0
    for message in request.messages:
        for part in message.content:
            if isinstance(part, TextPart):
                chars += len(part.text)
            elif isinstance(part, ImagePart):
                images += 1
        for call in message.tool_calls:
            chars += len(call.name) + len(call.arguments_json)
    for tool in request.tools:
        chars += len(tool.name) + len(tool.description) + len(str(tool.parameters))
    tokens = -(-chars // CHARS_PER_TOKEN) + MESSAGE_OVERHEAD * len(request.messages)
    return TokenCount(
        tokens=tokens + images * IMAGE_TOKENS,
        exact=False,
        method="estimate: about 4 characters per token",
    )
