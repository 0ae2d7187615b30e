"""Turning HTTP failures into the kernel's errors, for every HTTP provider alike.

A provider adapter parses its own error body (each provider words errors its own
way) and calls :func:`error_for_status` with what it found; transport failures go
through :func:`error_for_transport`. Both return, never raise, so the adapter
decides where to raise.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

import httpx

from llmkernel import errors

_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "context length",
    "context window",
    "maximum context",
    "prompt is too long",
    "too many tokens",
    "input is too long",
    "exceeds the maximum number of tokens",
    "input token count",
)
# Out of credit, as opposed to too fast: by the provider's code/type, or by phrases
# that only quota errors use (rate-limit messages often mention "quota" and "billing").
_QUOTA_CODES = ("insufficient_quota", "quota_exceeded", "billing")
_QUOTA_PHRASES = ("insufficient_quota", "credit balance", "exceeded your current quota")


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms``, or ``retry-after`` in seconds or as an
    HTTP date. ``None`` when absent or unreadable; never negative."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def parse_duration(value: str) -> float | None:
    """A protobuf duration such as ``"17s"`` or ``"0.5s"`` (Gemini's RetryInfo)."""
    try:
        return max(0.0, float(value.removesuffix("s")))
    except (AttributeError, ValueError):
        return None


def is_context_window_message(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in _CONTEXT_MARKERS)


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str,
    model: str = "",
    code: str | None = None,
    error_type: str | None = None,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> errors.ProviderError:
    """The kernel error for an HTTP error ``status`` and the body's ``code``/``type``.

    ``code`` and ``error_type`` are the provider's own words (``insufficient_quota``,
    ``overloaded_error``, ``RESOURCE_EXHAUSTED``...); they refine the status.
    """
    words = " ".join(w for w in (code, error_type) if w).lower()
    lowered = message.lower()
    quota = any(m in words for m in _QUOTA_CODES) or any(m in lowered for m in _QUOTA_PHRASES)
    cls: type[errors.ProviderError]
    if quota and status in (400, 402, 403, 429):
        cls = errors.QuotaExceededError  # out of credit: no retry helps
    elif "overloaded" in words:
        cls = errors.OverloadedError
    elif status == 429:
        cls = errors.RateLimitError
    elif status == 401:
        cls = errors.AuthenticationError
    elif status == 402:
        cls = errors.QuotaExceededError
    elif status == 403:
        cls = errors.PermissionDeniedError
    elif status == 404:
        cls = errors.ModelNotFoundError
    elif status == 408:
        cls = errors.TimeoutError
    elif status == 409:
        cls = errors.ServerError  # a conflict on the provider's side; retry
    elif status in (400, 413, 422):
        too_long = status == 413 and "token" in message
        if too_long or is_context_window_message(f"{words} {message}"):
            cls = errors.ContextWindowExceededError
        elif "content_filter" in words or "safety" in words:
            cls = errors.ContentFilteredError
        else:
            cls = errors.InvalidRequestError
    elif status in (503, 529):
        cls = errors.OverloadedError
    elif status == 504:
        cls = errors.TimeoutError
    elif status >= 500:
        cls = errors.ServerError
    else:
        cls = errors.InvalidRequestError
    return cls(
        message or f"HTTP {status}",
        provider=provider,
        model=model,
        status=status,
        request_id=request_id,
        retry_after=retry_after,
        code=code or error_type,
    )


def error_in_stream(
    kind_status: int,
    message: str,
    *,
    provider: str,
    model: str = "",
    code: str | None = None,
    error_type: str | None = None,
    request_id: str | None = None,
    status: int | None = 200,
) -> errors.ProviderError:
    """The kernel error for an error reported *inside* a successful (200) answer,
    usually mid-stream.

    The class comes from ``kind_status``, the HTTP status the provider documents
    for its error type (``overloaded_error`` → 529, ``rate_limit_exceeded`` → 429),
    refined by ``code``/``error_type`` as in :func:`error_for_status`; ``status``
    stays the real HTTP status (200, or ``None`` when unknown), as docs/errors.md
    defines it. The provider's error type leads the message.
    """
    label = error_type or code
    text = f"{label}: {message}" if label and label not in message else message
    error = error_for_status(
        kind_status,
        text,
        provider=provider,
        model=model,
        code=code,
        error_type=error_type,
        request_id=request_id,
    )
    error.status = status
    return error


def error_for_transport(exc: Exception, *, provider: str, model: str = "") -> errors.ProviderError:
    """The kernel error for an httpx transport failure (timeout, refused, reset)."""
    detail = type(exc).__name__
    text = str(exc)
    if text:
        detail = f"{detail}: {text}"
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return errors.TimeoutError(f"no answer in time ({detail})", provider=provider, model=model)
    return errors.NetworkError(f"connection failed ({detail})", provider=provider, model=model)


def request_id_from(headers: Mapping[str, str]) -> str | None:
    for name in ("x-request-id", "request-id", "x-goog-request-id", "cf-ray"):
        value = headers.get(name)
        if value:
            return value
    return None
