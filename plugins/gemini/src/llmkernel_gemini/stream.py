"""Gemini's ``streamGenerateContent?alt=sse`` answer as stream events, chunk by chunk.

Each SSE event's data is a whole ``GenerateContentResponse`` holding the next piece:
text and thought parts are deltas, ``functionCall`` parts arrive whole (each becomes
one :class:`ToolCallDelta` with the full JSON arguments), ``usageMetadata`` repeats
cumulatively (the last one is the total). There is no ``[DONE]``: the stream just
ends, so a stream that ends before a chunk carried a ``finishReason`` was cut off
(:class:`~llmkernel.errors.NetworkError`, retryable). An ``{"error": ...}`` chunk
is raised as the matching kernel error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from llmkernel.errors import NetworkError
from llmkernel.types import (
    FinishEvent,
    FinishReason,
    MetadataEvent,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
    UsageEvent,
)
from llmkernel_gemini.errors import error_from_object, error_object
from llmkernel_gemini.parse import (
    Where,
    candidate_parts,
    check_prompt_feedback,
    finish_reason,
    first_candidate,
    function_call,
    meta,
    optional_str,
    parse_json,
    parse_usage,
)


@attrs.define
class StreamParser:
    """Feed it each SSE event's data; it returns the events that chunk completes."""

    where: Where
    usage: Usage = attrs.field(factory=Usage)
    finish: FinishReason | None = None
    calls: int = 0
    _metadata_sent: bool = False
    _blocks: int = 0  # reasoning block indexes handed out so far
    _thought_block: int | None = None  # the block a run of thought parts goes to
    _text_signature_block: int | None = None

    def feed(self, data: str) -> list[StreamEvent]:
        chunk: Any = parse_json(data, "a stream chunk", self.where)
        error = error_object(chunk)
        if error is not None:
            raise error_from_object(
                error,
                status=None,
                provider=self.where.provider,
                model=self.where.model,
                request_id=self.where.request_id,
            )
        if not isinstance(chunk, Mapping):
            raise self.where.malformed(f"a stream chunk that is not a JSON object: {data[:200]!r}")
        check_prompt_feedback(chunk, self.where)
        events: list[StreamEvent] = []
        if not self._metadata_sent:
            response_id, model = meta(chunk, self.where)
            if response_id or model:
                self._metadata_sent = True
                events.append(MetadataEvent(id=response_id, model=model))
        if chunk.get("usageMetadata") is not None:
            self.usage = parse_usage(chunk["usageMetadata"], self.where)
        candidate = first_candidate(chunk, self.where)
        if candidate is None:
            return events
        for part in candidate_parts(candidate, self.where):
            events.extend(self._part(part))
        raw = optional_str(candidate, "finishReason", "candidates[0]", self.where)
        if raw:
            reason, refusal = finish_reason(raw, candidate, self.where)
            self.finish = reason
            if refusal:
                events.append(MetadataEvent(refusal=refusal))
        return events

    def _part(self, part: Mapping[str, Any]) -> list[StreamEvent]:
        signature = optional_str(part, "thoughtSignature", "part", self.where)
        if "functionCall" in part:
            self._thought_block = None
            name, args, call_id = function_call(part, self.where)
            index = self.calls
            self.calls += 1
            return [
                ToolCallDelta(
                    index=index,
                    id=call_id or f"call_{index}",
                    name=name,
                    arguments=json.dumps(args, ensure_ascii=False),
                    signature=signature,
                )
            ]
        text = optional_str(part, "text", "part", self.where) or ""
        if part.get("thought") is True:
            if self._thought_block is None:
                self._thought_block = self._new_block()
            return [ReasoningDelta(text=text, signature=signature, index=self._thought_block)]
        self._thought_block = None
        events: list[StreamEvent] = []
        if text:
            events.append(TextDelta(text=text))
        if signature:
            if self._text_signature_block is None:
                self._text_signature_block = self._new_block()
            events.append(ReasoningDelta(signature=signature, index=self._text_signature_block))
        return events

    def _new_block(self) -> int:
        self._blocks += 1
        return self._blocks - 1

    def end(self) -> list[StreamEvent]:
        """The stream's body ended: the usage and finish events, or a cut-off error."""
        if self.finish is None:
            raise NetworkError(
                "the stream ended before Gemini's last chunk (no finishReason): cut off",
                provider=self.where.provider,
                model=self.where.model,
                request_id=self.where.request_id,
            )
        finish = self.finish
        if self.calls and finish == "stop":
            finish = "tool_calls"
        return [UsageEvent(usage=self.usage), FinishEvent(finish_reason=finish)]
