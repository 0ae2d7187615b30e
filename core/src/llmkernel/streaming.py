"""Folding stream events into the final response."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from llmkernel.errors import MalformedResponseError
from llmkernel.types import (
    FinishEvent,
    FinishReason,
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


@attrs.define
class _CallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = attrs.field(factory=list)
    signature: str | None = None


@attrs.define
class _ThinkingParts:
    text: list[str] = attrs.field(factory=list)
    signature: str | None = None
    redacted: str | None = None


@attrs.define
class ResponseBuilder:
    """Feed every event of a provider's stream; :meth:`build` gives the Response.

    Text is concatenated, tool-call argument fragments are joined per ``index`` and
    parsed as JSON, thinking is kept per block with its signature, and the last
    usage event is the total.
    """

    provider: str = ""
    model: str = ""
    text: list[str] = attrs.field(factory=list)
    calls: dict[int, _CallParts] = attrs.field(factory=dict)
    thinking: dict[int, _ThinkingParts] = attrs.field(factory=dict)
    usage: Usage = attrs.field(factory=Usage)
    finish_reason: FinishReason | None = None
    id: str | None = None
    refusal: str | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)

    def add(self, event: StreamEvent) -> None:
        if isinstance(event, TextDelta):
            self.text.append(event.text)
        elif isinstance(event, ToolCallDelta):
            call = self.calls.setdefault(event.index, _CallParts())
            if event.id:
                call.id = event.id
            if event.name:
                call.name = event.name
            if event.signature:
                call.signature = event.signature
            call.arguments.append(event.arguments)
        elif isinstance(event, ReasoningDelta):
            block = self.thinking.setdefault(event.index, _ThinkingParts())
            block.text.append(event.text)
            if event.signature:
                block.signature = event.signature
            if event.redacted:
                block.redacted = event.redacted
        elif isinstance(event, UsageEvent):
            self.usage = event.usage
        elif isinstance(event, FinishEvent):
            self.finish_reason = event.finish_reason
        elif isinstance(event, MetadataEvent):
            self.id = event.id or self.id
            self.model = event.model or self.model
            self.refusal = event.refusal or self.refusal
            if event.headers is not None:
                self.headers = event.headers

    def build(self) -> Response:
        parts: list[Part] = [
            ReasoningPart(text="".join(b.text), signature=b.signature, redacted=b.redacted)
            for _, b in sorted(self.thinking.items())
        ]
        text = "".join(self.text)
        if text:
            parts.append(TextPart(text=text))
        calls = tuple(self._call(i, c) for i, c in sorted(self.calls.items()))
        finish = self.finish_reason or "stop"
        if calls and finish == "stop":
            finish = "tool_calls"
        return Response(
            message=Message(role="assistant", content=tuple(parts), tool_calls=calls),
            finish_reason=finish,
            usage=self.usage,
            id=self.id,
            model=self.model,
            refusal=self.refusal,
            headers=self.headers,
        )

    def _call(self, index: int, call: _CallParts) -> ToolCall:
        raw = "".join(call.arguments).strip()
        try:
            arguments: Any = json.loads(raw) if raw else {}
        except json.JSONDecodeError as exc:
            raise MalformedResponseError(
                f"tool call {call.name!r} arguments are not valid JSON: {exc}",
                provider=self.provider,
                model=self.model,
            ) from None
        if not isinstance(arguments, dict):
            raise MalformedResponseError(
                f"tool call {call.name!r} arguments are not a JSON object",
                provider=self.provider,
                model=self.model,
            )
        return ToolCall(
            id=call.id or f"call_{index}",
            name=call.name,
            arguments=arguments,
            signature=call.signature,
        )
