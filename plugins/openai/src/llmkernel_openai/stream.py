"""The incremental parser of a Chat Completions stream: one decoded chunk in, the
kernel's stream events out, as each chunk arrives."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from llmkernel.types import (
    FinishEvent,
    MetadataEvent,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
    UsageEvent,
)
from llmkernel_openai.parse import Malformed, chunk_usage, finish_reason, reasoning_text


@attrs.define
class StreamParser:
    """Feed each ``chat.completion.chunk`` to :meth:`feed`; call :meth:`end` at
    ``data: [DONE]`` for the final usage and finish events.

    Tool-call fragments are keyed by their ``index``; servers that leave it out
    (sending whole calls) get one index per call ``id``.
    """

    metadata_sent: bool = False
    usage: Usage | None = None
    finish: Any = None
    refusal: list[str] = attrs.field(factory=list)
    call_ids: dict[str, int] = attrs.field(factory=dict)
    call_indexes: set[int] = attrs.field(factory=set)
    last_index: int = 0

    def feed(self, data: Any) -> list[StreamEvent]:
        if not isinstance(data, Mapping):
            raise Malformed(f"a stream chunk is {type(data).__name__}, not a JSON object")
        events: list[StreamEvent] = []
        if not self.metadata_sent and (data.get("id") or data.get("model")):
            self.metadata_sent = True
            chunk_id, model = data.get("id"), data.get("model")
            events.append(
                MetadataEvent(
                    id=chunk_id if isinstance(chunk_id, str) else None,
                    model=model if isinstance(model, str) else None,
                )
            )
        found = chunk_usage(data)
        if found is not None:
            self.usage = found
        choices = data.get("choices")
        if choices is None:
            return events
        if not isinstance(choices, list):
            raise Malformed("a stream chunk's choices is not a list")
        for choice in choices:
            if not isinstance(choice, Mapping):
                raise Malformed("a stream choice is not an object")
            if choice.get("index", 0) not in (0, None):
                continue  # only the first choice is ever asked for
            events.extend(self._choice(choice))
        return events

    def _choice(self, choice: Mapping[str, Any]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        delta = choice.get("delta")
        if delta is None:
            delta = {}
        if not isinstance(delta, Mapping):
            raise Malformed("a stream choice's delta is not an object")
        thinking = reasoning_text(delta)
        if thinking:
            events.append(ReasoningDelta(text=thinking))
        content = delta.get("content")
        if isinstance(content, str) and content:
            events.append(TextDelta(text=content))
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            self.refusal.append(refusal)
        calls = delta.get("tool_calls")
        if calls is not None:
            if not isinstance(calls, list):
                raise Malformed("delta.tool_calls is not a list")
            for call in calls:
                events.append(self._call(call))
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason:
            self.finish = reason
        return events

    def _call(self, call: Any) -> ToolCallDelta:
        if not isinstance(call, Mapping):
            raise Malformed("a delta.tool_calls entry is not an object")
        call_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else None
        index = call.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            if call_id is not None:
                index = self.call_ids.get(call_id, len(self.call_indexes))
            else:
                index = self.last_index
        if call_id is not None:
            self.call_ids.setdefault(call_id, index)
        self.call_indexes.add(index)
        self.last_index = index
        function = call.get("function")
        function = function if isinstance(function, Mapping) else {}
        name = function.get("name")
        arguments = function.get("arguments")
        if isinstance(arguments, Mapping):
            arguments = json.dumps(arguments)
        elif not isinstance(arguments, str):
            arguments = ""
        return ToolCallDelta(
            index=index,
            id=call_id,
            name=name if isinstance(name, str) and name else None,
            arguments=arguments,
        )

    def end(self) -> list[StreamEvent]:
        """The closing events: a refusal, then the usage totals, then the finish."""
        events: list[StreamEvent] = []
        if self.refusal:
            events.append(MetadataEvent(refusal="".join(self.refusal)))
        events.append(UsageEvent(usage=self.usage or Usage()))
        events.append(
            FinishEvent(finish_reason=finish_reason(self.finish, has_calls=bool(self.call_indexes)))
        )
        return events


class ChunkParser(StreamParser):
    """The former name of :class:`StreamParser` (``chunk`` is ``feed``), kept while
    llmkernel-azure still drives it directly; new code subclasses OpenAIProvider."""

    def chunk(self, data: Any) -> list[StreamEvent]:
        return self.feed(data)
