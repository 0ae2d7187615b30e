"""Ollama's streamed ``/api/chat`` answer, one NDJSON object at a time, as events.

Each line is a chat object carrying a piece of ``message.content`` or
``message.thinking``, or whole ``message.tool_calls``; the last has ``"done": true``
with ``done_reason`` and the token counts. A line ``{"error": "..."}`` is a failure
mid-stream. A stream that ends before its ``done`` object was cut off.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from llmkernel.errors import NetworkError
from llmkernel.types import (
    FinishEvent,
    MetadataEvent,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    UsageEvent,
)
from llmkernel_ollama.errors import error_in_body
from llmkernel_ollama.parse import (
    finish_from,
    malformed,
    parse_usage,
    text_field,
    tool_calls_from,
)


@attrs.define
class StreamParser:
    """Feed it each decoded line; it returns the events the line holds.

    A tool call arrives whole in one chunk; it becomes one :class:`ToolCallDelta`
    with its id, name and the complete JSON arguments, indexed in arrival order.
    """

    provider: str
    model: str
    request_id: str | None = None
    started: bool = False
    done: bool = False
    calls: int = 0

    def feed(self, data: Any) -> list[StreamEvent]:
        provider, model = self.provider, self.model
        if not isinstance(data, Mapping):
            raise malformed("a stream line is not a JSON object", provider=provider, model=model)
        error = data.get("error")
        if error is not None:
            text = error if isinstance(error, str) else json.dumps(error)[:500]
            raise error_in_body(text, provider=provider, model=model, request_id=self.request_id)
        if self.done:
            return []  # nothing is defined after the final object
        events: list[StreamEvent] = []
        if not self.started:
            self.started = True
            answered = data.get("model")
            events.append(
                MetadataEvent(model=answered if isinstance(answered, str) and answered else model)
            )
        message = data.get("message")
        if message is not None:
            if not isinstance(message, Mapping):
                raise malformed("message is not an object", provider=provider, model=model)
            thinking = text_field(message, "thinking", provider=provider, model=model)
            if thinking:
                events.append(ReasoningDelta(text=thinking))
            content = text_field(message, "content", provider=provider, model=model)
            if content:
                events.append(TextDelta(text=content))
            calls = tool_calls_from(
                message.get("tool_calls"), self.calls, provider=provider, model=model
            )
            for call in calls:
                events.append(
                    ToolCallDelta(
                        index=self.calls,
                        id=call.id,
                        name=call.name,
                        arguments=call.arguments_json,
                    )
                )
                self.calls += 1
        if data.get("done") is True:
            self.done = True
            events.append(UsageEvent(usage=parse_usage(data)))
            events.append(
                FinishEvent(
                    finish_reason=finish_from(
                        data.get("done_reason"), has_tool_calls=self.calls > 0
                    )
                )
            )
        return events

    def end(self) -> None:
        """The body ended: raise if the final ``done`` object never came."""
        if not self.done:
            raise NetworkError(
                'the stream ended before Ollama\'s final "done" object (cut off)',
                provider=self.provider,
                model=self.model,
                request_id=self.request_id,
            )
