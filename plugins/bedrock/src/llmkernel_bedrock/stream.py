"""ConverseStream's events, one decoded event-stream frame at a time, as the
kernel's stream events.

Each frame has ``:message-type`` ``event`` and an ``:event-type``:
``messageStart`` (``role``), ``contentBlockStart`` (``start.toolUse`` with
``toolUseId`` and ``name`` for a tool call), ``contentBlockDelta`` (``delta.text``,
``delta.toolUse.input`` a fragment of the JSON arguments,
``delta.reasoningContent`` with ``text``/``signature``/``redactedContent``),
``contentBlockStop``, ``messageStop`` (``stopReason``) and ``metadata`` (``usage``,
``metrics.latencyMs``), each with its ``contentBlockIndex`` where it applies. A
frame with ``:message-type`` ``exception`` (``:exception-type`` naming it:
``throttlingException``, ``modelStreamErrorException``...) or ``error`` ends the
stream with that failure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from llmkernel import errors
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
from llmkernel_bedrock.errors import error_for, malformed
from llmkernel_bedrock.eventstream import Frame
from llmkernel_bedrock.parse import finish_reason, usage_from

__all__ = ["StreamParser"]


@attrs.define
class StreamParser:
    """Feed it each frame; it returns the events the frame holds."""

    provider: str
    model: str
    headers: Mapping[str, str] = attrs.field(factory=dict)
    started: bool = False
    stop_reason: str | None = None
    finished: bool = False
    usage: Usage | None = None
    #: contentBlockIndex of a tool call -> its index among the calls
    calls: dict[int, int] = attrs.field(factory=dict)

    def feed(self, frame: Frame) -> list[StreamEvent]:
        kind = frame.message_type
        if kind == "exception":
            raise error_for(
                None,
                frame.payload.decode("utf-8", "replace"),
                self.headers,
                provider=self.provider,
                model=self.model,
                exception_type=str(frame.headers.get(":exception-type") or ""),
            )
        if kind == "error":
            code = str(frame.headers.get(":error-code") or "")
            text = str(frame.headers.get(":error-message") or "")
            raise error_for(
                None,
                json.dumps({"message": text or code}),
                self.headers,
                provider=self.provider,
                model=self.model,
                exception_type=code,
            )
        if kind != "event":
            raise self._bad(f"a frame has :message-type {kind!r}")
        try:
            data = json.loads(frame.payload) if frame.payload else {}
        except ValueError:
            raise self._bad(f"a {frame.event_type} event's payload is not JSON") from None
        if not isinstance(data, Mapping):
            raise self._bad(f"a {frame.event_type} event's payload is not an object")
        events: list[StreamEvent] = []
        if not self.started:
            self.started = True
            events.append(MetadataEvent(model=self.model, headers=self.headers))
        if self.finished:
            return events
        handler = _HANDLERS.get(frame.event_type)
        if handler is not None:
            events.extend(handler(self, data))
        return events

    def _bad(self, what: str) -> errors.MalformedResponseError:
        return malformed(
            what,
            provider=self.provider,
            model=self.model,
            status=200,
            rid=self.headers.get("x-amzn-requestid"),
        )

    def _block_start(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        start = data.get("start")
        tool = start.get("toolUse") if isinstance(start, Mapping) else None
        if not isinstance(tool, Mapping):
            return []
        block = _index(data)
        call = self.calls.setdefault(block, len(self.calls))
        call_id, name = tool.get("toolUseId"), tool.get("name")
        if not isinstance(name, str) or not name:
            raise self._bad("contentBlockStart.start.toolUse has no name")
        return [
            ToolCallDelta(
                index=call,
                id=call_id if isinstance(call_id, str) and call_id else f"call_{call}",
                name=name,
            )
        ]

    def _block_delta(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        delta = data.get("delta")
        if not isinstance(delta, Mapping):
            raise self._bad("contentBlockDelta has no delta object")
        block = _index(data)
        text = delta.get("text")
        if isinstance(text, str):
            return [TextDelta(text=text)] if text else []
        tool = delta.get("toolUse")
        if isinstance(tool, Mapping):
            fragment = tool.get("input")
            if block not in self.calls:
                raise self._bad(f"a toolUse delta for block {block}, which started no tool call")
            return [
                ToolCallDelta(
                    index=self.calls[block], arguments=fragment if isinstance(fragment, str) else ""
                )
            ]
        thinking = delta.get("reasoningContent")
        if isinstance(thinking, Mapping):
            signature, redacted = thinking.get("signature"), thinking.get("redactedContent")
            return [
                ReasoningDelta(
                    text=thinking["text"] if isinstance(thinking.get("text"), str) else "",
                    signature=signature if isinstance(signature, str) else None,
                    redacted=redacted if isinstance(redacted, str) else None,
                    index=block,
                )
            ]
        return []  # citations and blocks the kernel has no type for

    def _message_stop(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        reason = data.get("stopReason")
        self.stop_reason = reason if isinstance(reason, str) else "end_turn"
        return []

    def _metadata(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        self.usage = usage_from(data.get("usage"))
        if self.stop_reason is None:
            return []
        return self._finish()

    def _finish(self) -> list[StreamEvent]:
        self.finished = True
        return [
            UsageEvent(usage=self.usage or Usage()),
            FinishEvent(finish_reason=finish_reason(self.stop_reason, has_calls=bool(self.calls))),
        ]

    def end(self) -> list[StreamEvent]:
        """The body ended: the closing events if the metadata never came, or a
        :class:`~llmkernel.errors.NetworkError` if the message never stopped."""
        if self.finished:
            return []
        if self.stop_reason is None:
            raise errors.NetworkError(
                "the stream ended before its messageStop event (cut off)",
                provider=self.provider,
                model=self.model,
                request_id=self.headers.get("x-amzn-requestid"),
            )
        return self._finish()


def _index(data: Mapping[str, Any]) -> int:
    value = data.get("contentBlockIndex")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


_HANDLERS = {
    "contentBlockStart": StreamParser._block_start,
    "contentBlockDelta": StreamParser._block_delta,
    "messageStop": StreamParser._message_stop,
    "metadata": StreamParser._metadata,
}
