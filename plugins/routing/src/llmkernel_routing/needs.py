"""What a request needs from a model, and whether a model's capabilities have it."""

from __future__ import annotations

from typing import Any

from llmkernel.types import Capabilities, ChatRequest, ImagePart

#: The capabilities a request can need, in the order they are reported.
NEEDS: tuple[str, ...] = ("tools", "images", "json_schema", "reasoning")


def request_needs(request: Any) -> tuple[str, ...]:
    """The capabilities ``request`` needs (none for anything but a chat request)."""
    if not isinstance(request, ChatRequest):
        return ()
    out: list[str] = []
    if request.tools and (request.tool_choice is None or request.tool_choice.mode != "none"):
        out.append("tools")
    if any(isinstance(p, ImagePart) for m in request.messages for p in m.content):
        out.append("images")
    if request.response_format is not None and request.response_format.type == "json_schema":
        out.append("json_schema")
    reasoning = request.reasoning
    if reasoning is not None and (
        reasoning.budget_tokens or reasoning.effort not in (None, "none")
    ):
        out.append("reasoning")
    return tuple(out)


def missing(capabilities: Capabilities | None, needed: tuple[str, ...]) -> list[str]:
    """The needed capabilities the model lacks; none when its capabilities are
    unknown (an unknown model is given the benefit of the doubt)."""
    if capabilities is None:
        return []
    return [name for name in needed if not getattr(capabilities, name, False)]


__all__ = ["NEEDS", "missing", "request_needs"]
