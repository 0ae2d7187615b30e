"""OpenAI error bodies → the kernel's errors.

OpenAI answers ``{"error": {"message", "type", "param", "code"}}``. Compatible
servers vary: ``{"error": "text"}``, ``{"message": ...}`` (Mistral),
``{"detail": ...}`` (FastAPI servers), or a numeric ``code`` (OpenRouter's HTTP
status inside a stream). Every shape is read defensively.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from llmkernel import errors
from llmkernel_http import error_for_status, error_in_stream, parse_retry_after, request_id_from

if TYPE_CHECKING:
    import httpx


@attrs.frozen(kw_only=True)
class ErrorInfo:
    message: str
    code: str | None = None
    type: str | None = None
    status: int | None = None  # a numeric code in the body (OpenRouter)


def error_info(data: Any) -> ErrorInfo | None:
    """The error described by a decoded JSON body, or None when it holds none."""
    if not isinstance(data, Mapping):
        return None
    error = data.get("error")
    if isinstance(error, str) and error:
        return ErrorInfo(message=error, type=_str(data.get("type")))
    if isinstance(error, Mapping) and error:
        return _from_object(error)
    if data.get("object") == "error" or ("message" in data and "choices" not in data):
        return _from_object(data)
    detail = data.get("detail")
    if detail:
        return ErrorInfo(message=detail if isinstance(detail, str) else json.dumps(detail))
    return None


def _from_object(error: Mapping[str, Any]) -> ErrorInfo:
    message = error.get("message")
    if not isinstance(message, str) or not message:
        message = json.dumps(error)[:500] if error else "unknown error"
    raw_code = error.get("code")
    status = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
    code = _str(raw_code) if status is None else None
    return ErrorInfo(message=message, code=code, type=_str(error.get("type")), status=status)


def _str(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    return None


def error_for_response(
    response: httpx.Response, *, provider: str, model: str
) -> errors.ProviderError:
    """The error for an HTTP error ``response`` whose body has been read."""
    text = response.text
    info: ErrorInfo | None = None
    try:
        info = error_info(json.loads(text))
    except ValueError:
        info = None
    if info is None:
        snippet = " ".join(text.split())[:300]
        message = f"HTTP {response.status_code}" + (f": {snippet}" if snippet else "")
        info = ErrorInfo(message=message)
    return error_for_status(
        response.status_code,
        info.message,
        provider=provider,
        model=model,
        code=info.code,
        error_type=info.type,
        request_id=request_id_from(response.headers),
        retry_after=parse_retry_after(response.headers),
    )


def for_body_error(
    info: ErrorInfo, *, provider: str, model: str, response: httpx.Response
) -> errors.ProviderError:
    """The error for an error object inside a 200 answer (mid-stream, usually).

    Its kind comes from the body's numeric code (OpenRouter), else from its
    type/code words; an unknown kind of error is a server error. ``status`` stays
    the HTTP status (200).
    """
    kind = info.status if info.status and 400 <= info.status <= 599 else _status(info)
    return error_in_stream(
        kind,
        info.message,
        provider=provider,
        model=model,
        code=info.code,
        error_type=info.type,
        request_id=request_id_from(response.headers),
        status=response.status_code,
    )


_STATUS_WORDS = (
    ("insufficient_quota", 429),
    ("rate_limit", 429),
    ("context_length", 400),
    ("invalid_request", 400),
    ("invalid_api_key", 401),
    ("authentication", 401),
    ("permission", 403),
    ("not_found", 404),
    ("overloaded", 503),
    ("timeout", 408),
)


def _status(info: ErrorInfo) -> int:
    words = f"{info.code or ''} {info.type or ''}".lower()
    for word, status in _STATUS_WORDS:
        if word in words:
            return status
    return 500


def malformed(
    what: str, *, provider: str, model: str, response: httpx.Response | None = None
) -> errors.MalformedResponseError:
    return errors.MalformedResponseError(
        f"OpenAI-compatible answer from {provider!r} was malformed: {what}",
        provider=provider,
        model=model,
        status=response.status_code if response is not None else None,
        request_id=request_id_from(response.headers) if response is not None else None,
    )


#: The former name, kept while llmkernel-azure still calls it.
for_response = error_for_response
