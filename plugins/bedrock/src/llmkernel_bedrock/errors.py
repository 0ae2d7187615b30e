"""Bedrock's error answers turned into the kernel's errors.

Bedrock is an AWS rest-json service: an error is an HTTP status with the error type
in the ``x-amzn-errortype`` header (``ValidationException:http://...``) and a body
``{"message": "..."}`` (some front ends write ``Message`` or ``__type``). Inside a
ConverseStream an error is a frame with ``:message-type: exception`` and
``:exception-type`` naming the member (``throttlingException``), its payload the
same ``{"message"}`` object. The request id is the ``x-amzn-requestid`` header.

The exception types and statuses are those of the Bedrock Runtime API reference
(``Converse``, ``ConverseStream``, ``InvokeModel``: Errors).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from llmkernel import errors
from llmkernel_http import error_for_status, is_context_window_message, parse_retry_after

__all__ = [
    "EXCEPTIONS",
    "error_for",
    "error_type",
    "malformed",
    "request_id",
]

#: AWS exception type -> (kernel error class, the HTTP status it comes with).
EXCEPTIONS: dict[str, tuple[type[errors.ProviderError], int]] = {
    "ThrottlingException": (errors.RateLimitError, 429),
    "ServiceQuotaExceededException": (errors.QuotaExceededError, 400),
    # The model is being loaded or scaled: retry later (the SDKs retry it too).
    "ModelNotReadyException": (errors.OverloadedError, 429),
    "ValidationException": (errors.InvalidRequestError, 400),
    "AccessDeniedException": (errors.PermissionDeniedError, 403),
    "ResourceNotFoundException": (errors.ModelNotFoundError, 404),
    "ModelTimeoutException": (errors.TimeoutError, 408),
    "ModelStreamErrorException": (errors.ServerError, 424),
    "ModelErrorException": (errors.ServerError, 424),
    "InternalServerException": (errors.ServerError, 500),
    "ServiceUnavailableException": (errors.OverloadedError, 503),
    # Signing and key failures (AWS common errors).
    "UnrecognizedClientException": (errors.AuthenticationError, 403),
    "InvalidSignatureException": (errors.AuthenticationError, 403),
    "IncompleteSignatureException": (errors.AuthenticationError, 403),
    "MissingAuthenticationTokenException": (errors.AuthenticationError, 403),
    "ExpiredTokenException": (errors.AuthenticationError, 403),
    "InvalidClientTokenId": (errors.AuthenticationError, 403),
    "SignatureDoesNotMatch": (errors.AuthenticationError, 403),
}
_CONTEXT_PHRASES = ("too many input tokens", "input is too long", "prompt is too long")


def request_id(headers: Mapping[str, str]) -> str | None:
    return headers.get("x-amzn-requestid") or headers.get("x-amz-request-id") or None


def error_type(raw: str | None) -> str:
    """``ValidationException`` from ``ValidationException:http://...``,
    ``com.amazon.coral.validate#ValidationException`` or ``validationException``."""
    if not raw:
        return ""
    name = raw.split(":", 1)[0].rsplit("#", 1)[-1].strip()
    return name[:1].upper() + name[1:]


def _body(text: str) -> tuple[str, str]:
    """The message and error type found in an error body."""
    try:
        data: Any = json.loads(text)
    except ValueError:
        return "", ""
    if not isinstance(data, Mapping):
        return "", ""
    message = data.get("message") or data.get("Message") or ""
    kind = data.get("__type") or data.get("code") or data.get("Code") or ""
    return (message if isinstance(message, str) else json.dumps(message)[:500]), (
        kind if isinstance(kind, str) else ""
    )


def error_for(
    status: int | None,
    body: str,
    headers: Mapping[str, str],
    *,
    provider: str,
    model: str,
    exception_type: str | None = None,
) -> errors.ProviderError:
    """The kernel error for a Bedrock error: an HTTP error answer (``status``, its
    body and headers) or an exception frame (``exception_type`` from its
    ``:exception-type`` header, ``body`` its payload, ``status`` None)."""
    message, body_type = _body(body)
    kind = error_type(exception_type or headers.get("x-amzn-errortype") or body_type)
    if not message:
        snippet = " ".join(body.split())[:300]
        message = snippet or (f"HTTP {status}" if status else kind or "unknown error")
    if kind == "ModelStreamErrorException":
        original = _original(body)
        if original:
            message = f"{message} ({original})"
    known = EXCEPTIONS.get(kind)
    rid = request_id(headers)
    retry_after = parse_retry_after(headers)
    if known is None:
        fallback = error_for_status(
            status or 500,
            message,
            provider=provider,
            model=model,
            error_type=kind or None,
            request_id=rid,
            retry_after=retry_after,
        )
        fallback.headers = dict(headers)
        return fallback
    cls, usual = known
    if cls is errors.InvalidRequestError:
        lowered = message.lower()
        if is_context_window_message(lowered) or any(p in lowered for p in _CONTEXT_PHRASES):
            cls = errors.ContextWindowExceededError
    return cls(
        message,
        provider=provider,
        model=model,
        status=status if status else usual,
        request_id=rid,
        retry_after=retry_after,
        code=kind,
        headers=dict(headers),
    )


def _original(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(data, Mapping):
        return ""
    status, text = data.get("originalStatusCode"), data.get("originalMessage")
    parts = [f"model status {status}" if status else "", text if isinstance(text, str) else ""]
    return ": ".join(p for p in parts if p)


def malformed(
    what: str, *, provider: str, model: str, status: int | None = None, rid: str | None = None
) -> errors.MalformedResponseError:
    return errors.MalformedResponseError(
        f"Bedrock's answer was malformed: {what}",
        provider=provider,
        model=model,
        status=status,
        request_id=rid,
    )
