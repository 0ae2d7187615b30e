"""Gemini's error answers turned into the kernel's errors.

Gemini answers errors as Google's RPC status::

    {"error": {"code": 429, "message": "...", "status": "RESOURCE_EXHAUSTED",
               "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                            "retryDelay": "17s"}, ...]}}

(some front ends wrap it in a one-element list). Beyond the HTTP status:

* ``API_KEY_INVALID`` (an ``ErrorInfo`` reason, on a 400) or a message saying the
  key is not valid -> :class:`AuthenticationError`.
* 429: :class:`QuotaExceededError` when a ``QuotaFailure`` violation names a daily
  quota (``PerDay`` in its quota id or metric, "per day"/"daily" in its
  description) or billing, or the message says the quota's ``limit: 0`` (the model
  is not in the project's tier); waiting minutes will not help with those. Every
  other 429 is a :class:`RateLimitError`. Gemini's 429 message always mentions
  "quota" and "billing", so the message alone decides nothing else.
* ``retry_after`` comes from ``RetryInfo.retryDelay`` (``"17s"``), else the
  ``Retry-After`` headers.
* "The input token count (N) exceeds the maximum number of tokens allowed (M)" ->
  :class:`ContextWindowExceededError`; 503 ``UNAVAILABLE`` -> :class:`OverloadedError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from llmkernel import errors
from llmkernel_http import (
    error_for_status,
    parse_duration,
    parse_retry_after,
    request_id_from,
)

_DAILY_MARKERS = ("perday", "per_day", "per day", "daily", "billing")
_KEY_MARKERS = ("api key not valid", "api key expired", "api_key_invalid")
_STATUS_CODES = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "DATA_LOSS": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def error_object(body: Any) -> Mapping[str, Any] | None:
    """The ``error`` object of a decoded body, or ``None`` when it has none."""
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            return error
    return None


def _details(error: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    details = error.get("details")
    if not isinstance(details, list):
        return []
    return [d for d in details if isinstance(d, Mapping)]


def _detail_type(detail: Mapping[str, Any]) -> str:
    kind = detail.get("@type")
    return kind.rsplit(".", 1)[-1] if isinstance(kind, str) else ""


def retry_delay(error: Mapping[str, Any]) -> float | None:
    """``RetryInfo.retryDelay`` in seconds."""
    for detail in _details(error):
        if _detail_type(detail) == "RetryInfo":
            delay = detail.get("retryDelay")
            if isinstance(delay, str):
                return parse_duration(delay)
            if isinstance(delay, Mapping):  # {"seconds": 17, "nanos": 0}
                seconds, nanos = delay.get("seconds", 0), delay.get("nanos", 0)
                try:
                    return max(0.0, float(seconds) + float(nanos) / 1e9)
                except (TypeError, ValueError):
                    return None
    return None


def _reasons(error: Mapping[str, Any]) -> list[str]:
    return [
        str(d.get("reason"))
        for d in _details(error)
        if _detail_type(d) == "ErrorInfo" and d.get("reason")
    ]


def is_daily_quota(error: Mapping[str, Any], message: str) -> bool:
    """The 429 rule: a daily quota or billing violation, or a quota of zero."""
    if "limit: 0" in message.lower():
        return True
    for detail in _details(error):
        if _detail_type(detail) != "QuotaFailure":
            continue
        violations = detail.get("violations")
        for violation in violations if isinstance(violations, list) else []:
            if not isinstance(violation, Mapping):
                continue
            words = " ".join(
                str(violation.get(k, ""))
                for k in ("quotaId", "quotaMetric", "description", "subject")
            ).lower()
            if any(marker in words for marker in _DAILY_MARKERS):
                return True
    return False


def error_from_object(
    error: Mapping[str, Any],
    *,
    status: int | None,
    provider: str,
    model: str,
    request_id: str | None = None,
    header_retry_after: float | None = None,
) -> errors.ProviderError:
    """The kernel error for a Google RPC ``error`` object (from a body or a stream).

    Inside a 200 answer (``status`` None or below 400) the kind comes from the
    object's ``code``/``status`` and the error keeps the HTTP status, 200, with the
    RPC status (``UNAVAILABLE``...) leading the message.
    """
    found = _error_from_object(
        error,
        status=status,
        provider=provider,
        model=model,
        request_id=request_id,
        header_retry_after=header_retry_after,
    )
    if status is None or status < 400:
        grpc_status = error.get("status")
        if isinstance(grpc_status, str) and grpc_status and grpc_status not in found.message:
            found.message = f"{grpc_status}: {found.message}"
            found.args = (found.message,)
        found.status = 200
    return found


def _error_from_object(
    error: Mapping[str, Any],
    *,
    status: int | None,
    provider: str,
    model: str,
    request_id: str | None = None,
    header_retry_after: float | None = None,
) -> errors.ProviderError:
    message = error.get("message")
    message = message if isinstance(message, str) and message else ""
    grpc_status = error.get("status")
    grpc_status = grpc_status if isinstance(grpc_status, str) else None
    code = error.get("code")
    if status is None or status < 400:  # an error inside a 200 stream
        if isinstance(code, int) and not isinstance(code, bool) and code >= 400:
            status = code
        else:
            status = _STATUS_CODES.get(grpc_status or "", 500)
    retry_after = retry_delay(error)
    if retry_after is None:
        retry_after = header_retry_after
    reasons = _reasons(error)
    text = message or (f"{grpc_status} (HTTP {status})" if grpc_status else f"HTTP {status}")
    common: dict[str, Any] = {
        "provider": provider,
        "model": model,
        "status": status,
        "request_id": request_id,
        "retry_after": retry_after,
    }
    lowered = message.lower()
    if "API_KEY_INVALID" in reasons or any(m in lowered for m in _KEY_MARKERS):
        return errors.AuthenticationError(text, code="API_KEY_INVALID", **common)
    if status == 429:
        # decided here, not by error_for_status: every Gemini 429 says "quota"
        quota = is_daily_quota(error, message)
        cls = errors.QuotaExceededError if quota else errors.RateLimitError
        return cls(text, code=grpc_status, **common)
    if status >= 500 and "overloaded" in lowered:
        return errors.OverloadedError(text, code=grpc_status, **common)
    return error_for_status(
        status,
        text,
        provider=provider,
        model=model,
        code=reasons[0] if reasons else None,
        error_type=grpc_status,
        request_id=request_id,
        retry_after=retry_after,
    )


def error_for_response(
    status: int, body: bytes, headers: Mapping[str, str], *, provider: str, model: str
) -> errors.ProviderError:
    """The kernel error for an HTTP error answer from Gemini."""
    text = body.decode("utf-8", errors="replace")
    request_id = request_id_from(headers)
    header_retry_after = parse_retry_after(headers)
    try:
        decoded: Any = json.loads(text)
    except ValueError:
        decoded = None
    error = error_object(decoded)
    if error is not None:
        return error_from_object(
            error,
            status=status,
            provider=provider,
            model=model,
            request_id=request_id,
            header_retry_after=header_retry_after,
        )
    snippet = " ".join(text.split())[:300]
    message = f"HTTP {status}: {snippet}" if snippet else f"HTTP {status}"
    return error_for_status(
        status,
        message,
        provider=provider,
        model=model,
        request_id=request_id,
        retry_after=header_retry_after,
    )
