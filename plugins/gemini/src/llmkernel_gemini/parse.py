"""A Gemini ``GenerateContentResponse`` as the kernel's :class:`Response`.

Every field is read defensively: a missing or wrongly typed field raises
:class:`~llmkernel.errors.MalformedResponseError` naming it, never a ``KeyError``.

Decisions (also in the README):

* ``promptFeedback.blockReason`` with no candidates (the prompt itself was blocked)
  raises :class:`~llmkernel.errors.ContentFilteredError`: there is no answer.
* A candidate stopped for safety (``SAFETY``, ``RECITATION``, ``BLOCKLIST``,
  ``PROHIBITED_CONTENT``, ``SPII``, ``IMAGE_SAFETY``, ``LANGUAGE``) is an answer
  with ``finish_reason="content_filter"`` and ``refusal`` saying why.
* ``MALFORMED_FUNCTION_CALL`` and ``UNEXPECTED_TOOL_CALL`` (the model wrote a call
  Gemini could not parse, or one to a tool it was not given) raise
  :class:`~llmkernel.errors.MalformedResponseError`, marked retryable: another
  sample usually gets it right, and ``stop`` with nothing in it would hide it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from llmkernel.errors import ContentFilteredError, MalformedResponseError
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

_FINISH: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "LANGUAGE": "content_filter",
}
_BROKEN_CALL = ("MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL")


@attrs.define
class Where:
    """Who is asking: filled into every error raised while reading an answer."""

    provider: str
    model: str
    request_id: str | None = None

    def malformed(self, what: str, **extra: Any) -> MalformedResponseError:
        return MalformedResponseError(
            f"Gemini answered {what}",
            provider=self.provider,
            model=self.model,
            request_id=self.request_id,
            **extra,
        )


# ----------------------------------------------------------------------------- fields


def as_mapping(value: Any, what: str, where: Where) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise where.malformed(f"{what} that is not a JSON object: {_show(value)}")
    return value


def optional_list(data: Mapping[str, Any], key: str, what: str, where: Where) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise where.malformed(f"{what}.{key} that is not a list: {_show(value)}")
    return value


def optional_str(data: Mapping[str, Any], key: str, what: str, where: Where) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise where.malformed(f"{what}.{key} that is not a string: {_show(value)}")


def _count(data: Mapping[str, Any], key: str, where: Where) -> int:
    value = data.get(key, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise where.malformed(f"usageMetadata.{key} that is not a token count: {_show(value)}")
    return value


def _show(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text[:200]


# ----------------------------------------------------------------------------- usage


def parse_usage(value: Any, where: Where) -> Usage:
    """``usageMetadata`` in the kernel's (OpenAI's) convention.

    ``promptTokenCount`` includes ``cachedContentTokenCount``; tool-use prompt tokens
    are input too. ``thoughtsTokenCount`` is not part of ``candidatesTokenCount``, so
    output is their sum and reasoning is the thoughts.
    """
    if value is None:
        return Usage()
    data = as_mapping(value, "usageMetadata", where)
    prompt = _count(data, "promptTokenCount", where)
    tool_prompt = _count(data, "toolUsePromptTokenCount", where)
    cached = _count(data, "cachedContentTokenCount", where)
    candidates = _count(data, "candidatesTokenCount", where)
    thoughts = _count(data, "thoughtsTokenCount", where)
    return Usage(
        input_tokens=prompt + tool_prompt,
        output_tokens=candidates + thoughts,
        cached_input_tokens=cached,
        reasoning_tokens=thoughts,
    )


# ----------------------------------------------------------------------------- chunks


def check_prompt_feedback(data: Mapping[str, Any], where: Where) -> None:
    """Raise :class:`ContentFilteredError` when the prompt was blocked."""
    feedback = data.get("promptFeedback")
    if not isinstance(feedback, Mapping):
        return
    reason = feedback.get("blockReason")
    if not reason or data.get("candidates"):
        return
    detail = feedback.get("blockReasonMessage")
    message = f"Gemini blocked the prompt ({reason})"
    if isinstance(detail, str) and detail:
        message += f": {detail}"
    raise ContentFilteredError(
        message,
        provider=where.provider,
        model=where.model,
        status=200,
        request_id=where.request_id,
        code=str(reason),
    )


def first_candidate(data: Mapping[str, Any], where: Where) -> Mapping[str, Any] | None:
    candidates = optional_list(data, "candidates", "response", where)
    if not candidates:
        return None
    return as_mapping(candidates[0], "candidates[0]", where)


def candidate_parts(candidate: Mapping[str, Any], where: Where) -> list[Mapping[str, Any]]:
    content = candidate.get("content")
    if content is None:
        return []
    content = as_mapping(content, "candidates[0].content", where)
    return [
        as_mapping(p, f"candidates[0].content.parts[{i}]", where)
        for i, p in enumerate(optional_list(content, "parts", "candidates[0].content", where))
    ]


def function_call(part: Mapping[str, Any], where: Where) -> tuple[str, dict[str, Any], str | None]:
    """A ``functionCall`` part's name, arguments and (Gemini's own) id."""
    call = as_mapping(part["functionCall"], "functionCall", where)
    name = optional_str(call, "name", "functionCall", where)
    if not name:
        raise where.malformed(f"a functionCall without a name: {_show(call)}")
    args = call.get("args")
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise where.malformed(f"functionCall {name!r} args that are not an object: {_show(args)}")
    call_id = call.get("id")
    return name, dict(args), call_id if isinstance(call_id, str) and call_id else None


def finish_reason(
    raw: str | None, candidate: Mapping[str, Any], where: Where
) -> tuple[FinishReason, str | None]:
    """The kernel's finish reason and, for safety stops, the refusal text."""
    if raw in _BROKEN_CALL:
        detail = candidate.get("finishMessage")
        message = f"Gemini could not use the model's function call ({raw})"
        if isinstance(detail, str) and detail:
            message += f": {detail[:500]}"
        raise MalformedResponseError(
            message,
            provider=where.provider,
            model=where.model,
            request_id=where.request_id,
            retryable=True,
            code=raw,
        )
    reason = _FINISH.get(raw or "", "stop")
    refusal = None
    if reason == "content_filter":
        detail = candidate.get("finishMessage")
        refusal = f"Gemini stopped the answer ({raw})"
        if isinstance(detail, str) and detail:
            refusal += f": {detail}"
    return reason, refusal


def meta(data: Mapping[str, Any], where: Where) -> tuple[str | None, str | None]:
    """``responseId`` and ``modelVersion``."""
    return (
        optional_str(data, "responseId", "response", where),
        optional_str(data, "modelVersion", "response", where),
    )


# ----------------------------------------------------------------------------- whole answers


def parse_response(data: Any, where: Where) -> Response:
    """A whole ``generateContent`` answer as a :class:`Response`."""
    body = as_mapping(data, "a body", where)
    check_prompt_feedback(body, where)
    response_id, model_version = meta(body, where)
    usage = parse_usage(body.get("usageMetadata"), where)
    candidate = first_candidate(body, where)
    if candidate is None:
        raise where.malformed(f"no candidates: {_show(body)}")

    reasoning: list[Part] = []
    texts: list[str] = []
    text_signature: str | None = None
    calls: list[ToolCall] = []
    for part in candidate_parts(candidate, where):
        signature = optional_str(part, "thoughtSignature", "part", where)
        if "functionCall" in part:
            name, args, call_id = function_call(part, where)
            calls.append(
                ToolCall(
                    id=call_id or f"call_{len(calls)}",
                    name=name,
                    arguments=args,
                    signature=signature,
                )
            )
            continue
        text = optional_str(part, "text", "part", where) or ""
        if part.get("thought") is True:
            reasoning.append(ReasoningPart(text=text, signature=signature))
        else:
            texts.append(text)
            text_signature = signature or text_signature
    if text_signature:
        reasoning.append(ReasoningPart(signature=text_signature))

    finish, refusal = finish_reason(
        optional_str(candidate, "finishReason", "candidates[0]", where), candidate, where
    )
    if calls and finish == "stop":
        finish = "tool_calls"
    content = list(reasoning)
    text = "".join(texts)
    if text:
        content.append(TextPart(text=text))
    return Response(
        message=Message(role="assistant", content=tuple(content), tool_calls=tuple(calls)),
        finish_reason=finish,
        usage=usage,
        id=response_id,
        model=model_version or "",
        refusal=refusal,
    )


def parse_json(text: str, what: str, where: Where) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        snippet = " ".join(text.split())[:200]
        raise where.malformed(f"{what} that is not JSON: {snippet!r}") from None
