"""Anthropic Messages API responses to kernel types: usage, finish reason, message."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from llmkernel.errors import MalformedResponseError
from llmkernel.types import (
    FinishReason,
    Message,
    Part,
    ReasoningPart,
    Response,
    TextPart,
    ToolCall,
    Usage,
)
from llmkernel_http import token_count

REFUSAL_MESSAGE = "the model declined to answer (stop_reason refusal)"


_int = token_count


def parse_usage(raw: Any) -> Usage:
    """Anthropic's ``usage`` in the kernel's (OpenAI's) convention.

    Anthropic's ``input_tokens`` excludes cache reads and writes; the kernel's
    ``input_tokens`` is every input token, so the three are added up.
    ``output_tokens`` already includes thinking; Anthropic does not report the
    thinking part apart, so ``reasoning_tokens`` stays 0. 1-hour cache writes
    (``cache_creation.ephemeral_1h_input_tokens``) are ``cache_write_1h_tokens``,
    part of ``cache_write_tokens``.
    """
    if not isinstance(raw, Mapping):
        return Usage()
    plain = _int(raw.get("input_tokens"))
    read = _int(raw.get("cache_read_input_tokens"))
    write = _int(raw.get("cache_creation_input_tokens"))
    one_hour = _int(raw.get(ONE_HOUR_WRITES))
    creation = raw.get("cache_creation")
    if isinstance(creation, Mapping):
        one_hour = max(one_hour, _int(creation.get("ephemeral_1h_input_tokens")))
        write = max(write, one_hour + _int(creation.get("ephemeral_5m_input_tokens")))
    return Usage(
        input_tokens=plain + read + write,
        output_tokens=_int(raw.get("output_tokens")),
        cached_input_tokens=read,
        cache_write_tokens=write,
        cache_write_1h_tokens=min(one_hour, write),
        reasoning_tokens=_int(raw.get("reasoning_tokens")),
    )


#: where :func:`merge_usage` keeps a stream's 1-hour cache writes (a flat name for
#: the nested ``cache_creation.ephemeral_1h_input_tokens``)
ONE_HOUR_WRITES = "cache_creation.ephemeral_1h_input_tokens"


#: usage fields, as Anthropic names them, that streams report cumulatively
USAGE_FIELDS = (
    "input_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "output_tokens",
    "reasoning_tokens",
)


def merge_usage(into: dict[str, int], raw: Any) -> None:
    """Fold a stream's ``usage`` (``message_start``'s, then each ``message_delta``'s
    cumulative counts) into ``into``, keeping the largest count of each field: the
    counts only grow, and a delta may leave a field out or send it as 0."""
    if not isinstance(raw, Mapping):
        return
    for name in USAGE_FIELDS:
        if name in raw:
            into[name] = max(into.get(name, 0), _int(raw.get(name)))
    creation = raw.get("cache_creation")
    if isinstance(creation, Mapping) and "ephemeral_1h_input_tokens" in creation:
        one_hour = _int(creation.get("ephemeral_1h_input_tokens"))
        into[ONE_HOUR_WRITES] = max(into.get(ONE_HOUR_WRITES, 0), one_hour)


def finish_reason(stop_reason: Any, *, has_tool_calls: bool) -> FinishReason:
    """Anthropic's ``stop_reason`` as the kernel's finish reason."""
    if has_tool_calls:
        return "tool_calls"
    if stop_reason in ("max_tokens", "model_context_window_exceeded"):
        return "length"
    if stop_reason == "refusal":
        return "content_filter"
    # end_turn, stop_sequence, pause_turn, and tool_use of the structured-output tool
    return "stop"


def refusal_text(stop_details: Any) -> str:
    if isinstance(stop_details, Mapping):
        explanation = stop_details.get("explanation")
        if isinstance(explanation, str) and explanation:
            return explanation
    return REFUSAL_MESSAGE


def parse_response(
    body: Any,
    *,
    provider: str,
    model: str,
    format_tool: str | None,
    request_id: str | None = None,
) -> Response:
    """A non-streaming Messages API response as a :class:`Response`.

    With structured output, the ``format_tool``'s input is the answer: its JSON is
    the text and ``parsed``, and it is not reported as a tool call.
    """

    def bad(what: str) -> MalformedResponseError:
        return MalformedResponseError(
            f"anthropic answered a message that is malformed: {what}",
            provider=provider,
            model=model,
            status=200,
            request_id=request_id,
        )

    if not isinstance(body, Mapping):
        raise bad(f"expected a JSON object, got {type(body).__name__}")
    if body.get("type") == "error":
        raise bad("an error body with status 200")
    content = body.get("content")
    if not isinstance(content, list):
        raise bad("no 'content' list")
    reasoning: list[Part] = []
    texts: list[str] = []
    calls: list[ToolCall] = []
    parsed: Any = None
    structured: str | None = None
    for i, block in enumerate(content):
        if not isinstance(block, Mapping):
            raise bad(f"content[{i}] is not an object")
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            if not isinstance(text, str):
                raise bad(f"content[{i}].text is not a string")
            texts.append(text)
        elif kind == "thinking":
            thinking = block.get("thinking")
            signature = block.get("signature")
            reasoning.append(
                ReasoningPart(
                    text=thinking if isinstance(thinking, str) else "",
                    signature=signature if isinstance(signature, str) and signature else None,
                )
            )
        elif kind == "redacted_thinking":
            data = block.get("data")
            if not isinstance(data, str):
                raise bad(f"content[{i}].data is not a string")
            reasoning.append(ReasoningPart(redacted=data))
        elif kind == "tool_use":
            call_id, name, arguments = block.get("id"), block.get("name"), block.get("input")
            if not isinstance(name, str) or not name:
                raise bad(f"content[{i}] tool_use has no name")
            if arguments is None:
                arguments = {}
            if not isinstance(arguments, Mapping):
                raise bad(f"content[{i}] tool_use input is not an object")
            if format_tool is not None and name == format_tool and structured is None:
                parsed = dict(arguments)
                structured = json.dumps(parsed, ensure_ascii=False)
                continue
            if not isinstance(call_id, str) or not call_id:
                raise bad(f"content[{i}] tool_use has no id")
            calls.append(ToolCall(id=call_id, name=name, arguments=dict(arguments)))
        # server tool blocks (web search...) and future block types are skipped
    stop_reason = body.get("stop_reason")
    text = structured if structured is not None else "".join(texts)
    parts: list[Part] = list(reasoning)
    if text:
        parts.append(TextPart(text=text))
    finish = finish_reason(stop_reason, has_tool_calls=bool(calls))
    response_id = body.get("id")
    response_model = body.get("model")
    return Response(
        message=Message(role="assistant", content=tuple(parts), tool_calls=tuple(calls)),
        finish_reason=finish,
        usage=parse_usage(body.get("usage")),
        id=response_id if isinstance(response_id, str) else None,
        model=response_model if isinstance(response_model, str) else "",
        parsed=parsed,
        refusal=refusal_text(body.get("stop_details")) if stop_reason == "refusal" else None,
    )
