"""An incremental parser for Anthropic's Messages event stream.

Feed it each decoded SSE event; it returns the kernel events that event completes.
The stream is ``message_start``, then per content block ``content_block_start``,
``content_block_delta``\\* and ``content_block_stop``, then ``message_delta``
(stop reason, cumulative usage) and ``message_stop``; ``ping`` may come anywhere and
``error`` replaces the rest when the API fails after answering 200.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from llmkernel.errors import MalformedResponseError, NetworkError
from llmkernel.types import (
    FinishEvent,
    MetadataEvent,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    UsageEvent,
)
from llmkernel_anthropic.errors import error_from_event
from llmkernel_anthropic.parse import finish_reason, merge_usage, parse_usage, refusal_text

if TYPE_CHECKING:
    from llmkernel_http import SSEEvent


@attrs.define
class _Block:
    """What a content block index is: ``text``, ``thinking``, ``tool``, ``format``
    (the structured-output tool, streamed as text) or ``other`` (ignored)."""

    kind: str
    index: int = 0  # the tool-call or thinking-block index the kernel sees


@attrs.define
class StreamParser:
    """State of one stream. ``format_tool`` names the structured-output tool."""

    provider: str
    model: str
    format_tool: str | None = None
    request_id: str | None = None
    blocks: dict[int, _Block] = attrs.field(factory=dict)
    tool_calls: int = 0
    thinking_blocks: int = 0
    usage: dict[str, int] = attrs.field(factory=dict)
    stop_reason: str | None = None
    stop_details: Any = None
    metadata: MetadataEvent | None = None
    started: bool = False
    done: bool = False

    def feed(self, sse: SSEEvent) -> list[StreamEvent]:
        if self.done:
            return []
        if not sse.data.strip():
            return []  # a bare ``event:`` line or a keep-alive
        try:
            data: Any = json.loads(sse.data)
        except ValueError:
            raise self._malformed(f"an event's data is not JSON: {sse.data[:200]!r}") from None
        if not isinstance(data, Mapping):
            raise self._malformed(f"an event's data is not a JSON object: {sse.data[:200]!r}")
        kind = data.get("type")
        if not isinstance(kind, str):
            kind = sse.event
        if kind == "error":
            raise error_from_event(
                data, provider=self.provider, model=self.model, request_id=self.request_id
            )
        handler = getattr(self, f"_on_{kind}", None)
        if handler is None:
            return []  # ping and event types added later
        events: list[StreamEvent] = handler(data)
        if events and self.metadata is not None:
            # held back until there is something to show, so that an error event
            # right after message_start fails the stream before its first event
            # (the kernel may then retry or fall back)
            events.insert(0, self.metadata)
            self.metadata = None
        return events

    def end(self) -> list[StreamEvent]:
        """The body ended: the closing events, or NetworkError when cut short."""
        if not self.done:
            where = "before message_stop" if self.started else "before any event"
            raise NetworkError(
                f"the stream ended {where}: the response was cut off",
                provider=self.provider,
                model=self.model,
                status=200,
                request_id=self.request_id,
            )
        return []

    # ----------------------------------------------------------------- events

    def _on_message_start(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        message = data.get("message")
        if not isinstance(message, Mapping):
            raise self._malformed("message_start without a message object")
        self.started = True
        merge_usage(self.usage, message.get("usage"))
        message_id = message.get("id")
        model = message.get("model")
        self.metadata = MetadataEvent(
            id=message_id if isinstance(message_id, str) else None,
            model=model if isinstance(model, str) and model else None,
        )
        return []

    def _on_content_block_start(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        index = self._index(data)
        block = data.get("content_block")
        if not isinstance(block, Mapping):
            raise self._malformed("content_block_start without a content_block object")
        kind = block.get("type")
        if kind == "text":
            self.blocks[index] = _Block("text")
            text = block.get("text")
            return [TextDelta(text=text)] if isinstance(text, str) and text else []
        if kind == "thinking":
            self.blocks[index] = _Block("thinking", self.thinking_blocks)
            self.thinking_blocks += 1
            text = block.get("thinking")
            signature = block.get("signature")
            if (isinstance(text, str) and text) or (isinstance(signature, str) and signature):
                return [
                    ReasoningDelta(
                        text=text if isinstance(text, str) else "",
                        signature=signature if isinstance(signature, str) and signature else None,
                        index=self.blocks[index].index,
                    )
                ]
            return []
        if kind == "redacted_thinking":
            self.blocks[index] = _Block("redacted", self.thinking_blocks)
            self.thinking_blocks += 1
            redacted = block.get("data")
            if not isinstance(redacted, str):
                raise self._malformed("redacted_thinking block without data")
            return [ReasoningDelta(redacted=redacted, index=self.blocks[index].index)]
        if kind == "tool_use":
            name = block.get("name")
            call_id = block.get("id")
            if not isinstance(name, str) or not name:
                raise self._malformed("tool_use block without a name")
            start_input = block.get("input")
            initial = (
                json.dumps(start_input, ensure_ascii=False)
                if isinstance(start_input, Mapping) and start_input
                else ""
            )
            if self.format_tool is not None and name == self.format_tool:
                self.blocks[index] = _Block("format")
                return [TextDelta(text=initial)] if initial else []
            self.blocks[index] = _Block("tool", self.tool_calls)
            self.tool_calls += 1
            return [
                ToolCallDelta(
                    index=self.blocks[index].index,
                    id=call_id if isinstance(call_id, str) and call_id else None,
                    name=name,
                    arguments=initial,
                )
            ]
        self.blocks[index] = _Block("other")
        return []

    def _on_content_block_delta(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        index = self._index(data)
        delta = data.get("delta")
        if not isinstance(delta, Mapping):
            raise self._malformed("content_block_delta without a delta object")
        block = self.blocks.get(index)
        if block is None:
            raise self._malformed(f"content_block_delta for block {index}, which never started")
        kind = delta.get("type")
        if kind == "text_delta":
            text = self._str(delta, "text")
            return [TextDelta(text=text)] if text else []
        if kind == "input_json_delta":
            fragment = self._str(delta, "partial_json")
            if not fragment:
                return []
            if block.kind == "format":
                return [TextDelta(text=fragment)]
            if block.kind == "tool":
                return [ToolCallDelta(index=block.index, arguments=fragment)]
            return []
        if kind == "thinking_delta":
            text = self._str(delta, "thinking")
            return [ReasoningDelta(text=text, index=block.index)] if text else []
        if kind == "signature_delta":
            signature = self._str(delta, "signature")
            return [ReasoningDelta(signature=signature, index=block.index)] if signature else []
        return []  # citations_delta and later delta types

    def _on_message_delta(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        delta = data.get("delta")
        if isinstance(delta, Mapping):
            stop = delta.get("stop_reason")
            if isinstance(stop, str):
                self.stop_reason = stop
            if delta.get("stop_details") is not None:
                self.stop_details = delta.get("stop_details")
        merge_usage(self.usage, data.get("usage"))
        return []

    def _on_message_stop(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        self.done = True
        events: list[StreamEvent] = []
        if self.stop_reason == "refusal":
            events.append(MetadataEvent(refusal=refusal_text(self.stop_details)))
        events.append(UsageEvent(usage=parse_usage(self.usage)))
        events.append(
            FinishEvent(
                finish_reason=finish_reason(self.stop_reason, has_tool_calls=self.tool_calls > 0)
            )
        )
        return events

    # ----------------------------------------------------------------- helpers

    def _index(self, data: Mapping[str, Any]) -> int:
        index = data.get("index")
        if isinstance(index, bool) or not isinstance(index, int):
            raise self._malformed(f"{data.get('type')} without an integer index")
        return index

    def _str(self, delta: Mapping[str, Any], key: str) -> str:
        value = delta.get(key, "")
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self._malformed(f"{delta.get('type')}.{key} is not a string")
        return value

    def _malformed(self, what: str) -> MalformedResponseError:
        return MalformedResponseError(
            f"anthropic sent a malformed stream: {what}",
            provider=self.provider,
            model=self.model,
            status=200,
            request_id=self.request_id,
        )
