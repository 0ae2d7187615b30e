"""Anthropic error bodies to kernel errors.

Anthropic answers errors as ``{"type": "error", "error": {"type": ..., "message":
...}, "request_id": ...}`` with a ``request-id`` header, both for HTTP errors and
for ``event: error`` inside a 200 stream.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from llmkernel import errors
from llmkernel_http import error_for_status, error_in_stream, parse_retry_after, request_id_from

#: The HTTP status Anthropic documents for each error type; used for errors that
#: arrive inside a 200 stream, where the HTTP status says nothing.
STATUS_FOR_TYPE: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

# Anthropic has no quota status: an empty prepaid balance is a 400.
_QUOTA_MARKERS = ("credit balance", "spend limit", "usage limits", "billing")
_QUOTA_CODES = ("billing_error", "enforced_spend_limit_reached")


def read_error_body(text: str) -> tuple[str | None, str, str | None, str | None]:
    """``(error type, message, detail code, body request id)`` from an error body.

    Never raises: a body that is not Anthropic's JSON gives its first 200 characters
    as the message.
    """
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = None
    if not isinstance(body, Mapping):
        snippet = " ".join(text.split())[:200]
        return None, snippet, None, None
    error = body.get("error")
    request_id = body.get("request_id")
    request_id = request_id if isinstance(request_id, str) and request_id else None
    if not isinstance(error, Mapping):
        message = body.get("message")
        if isinstance(message, str):
            return None, message, None, request_id
        return None, " ".join(text.split())[:200], None, request_id
    kind = error.get("type")
    message = error.get("message")
    details = error.get("details")
    code = details.get("error_code") if isinstance(details, Mapping) else None
    return (
        kind if isinstance(kind, str) else None,
        message if isinstance(message, str) else "",
        code if isinstance(code, str) else None,
        request_id,
    )


def make_error(
    status: int,
    kind: str | None,
    message: str,
    *,
    provider: str,
    model: str,
    request_id: str | None = None,
    retry_after: float | None = None,
    code: str | None = None,
) -> errors.ProviderError:
    """The kernel error for an Anthropic error ``kind`` (``overloaded_error``...)."""
    text = message or (f"{kind}" if kind else f"HTTP {status}")
    lowered = text.lower()
    if (
        kind in _QUOTA_CODES
        or code in _QUOTA_CODES
        or (status in (400, 403, 429) and any(m in lowered for m in _QUOTA_MARKERS))
    ):
        return errors.QuotaExceededError(
            text,
            provider=provider,
            model=model,
            status=status,
            request_id=request_id,
            retry_after=retry_after,
            code=code or kind,
        )
    # the rest, overloaded_error on any status included, is the shared mapping's job
    return error_for_status(
        status,
        text,
        provider=provider,
        model=model,
        error_type=kind,
        code=code,
        request_id=request_id,
        retry_after=retry_after,
    )


def error_for_response(
    status: int,
    headers: Mapping[str, str],
    text: str,
    *,
    provider: str,
    model: str,
) -> errors.ProviderError:
    """The kernel error for an HTTP error response from Anthropic."""
    kind, message, code, body_request_id = read_error_body(text)
    if not message:
        message = f"HTTP {status}"
    return make_error(
        status,
        kind,
        message,
        provider=provider,
        model=model,
        request_id=request_id_from(headers) or body_request_id,
        retry_after=parse_retry_after(headers),
        code=code,
    )


def error_from_event(
    data: Any, *, provider: str, model: str, request_id: str | None
) -> errors.ProviderError:
    """The kernel error for an ``event: error`` inside a 200 stream."""
    error = data.get("error") if isinstance(data, Mapping) else None
    if not isinstance(error, Mapping):
        return errors.MalformedResponseError(
            f"anthropic sent a stream error event without an error object: {str(data)[:200]}",
            provider=provider,
            model=model,
            status=200,
            request_id=request_id,
        )
    kind = error.get("type") if isinstance(error.get("type"), str) else None
    message = error.get("message") if isinstance(error.get("message"), str) else ""
    details = error.get("details")
    code = details.get("error_code") if isinstance(details, Mapping) else None
    code = code if isinstance(code, str) else None
    text = f"error in stream: {message or kind or 'unknown error'}"
    if kind in _QUOTA_CODES or code in _QUOTA_CODES:
        return errors.QuotaExceededError(
            f"{kind}: {text}" if kind else text,
            provider=provider,
            model=model,
            status=200,
            request_id=request_id,
            code=code or kind,
        )
    # the kind from the error type's documented status; the status stays 200
    return error_in_stream(
        STATUS_FOR_TYPE.get(kind or "", 500),
        text,
        provider=provider,
        model=model,
        code=code,
        error_type=kind,
        request_id=request_id,
    )
