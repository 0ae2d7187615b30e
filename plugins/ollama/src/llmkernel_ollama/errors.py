"""Ollama's error answers turned into the kernel's errors.

Ollama answers errors as ``{"error": "<message>"}`` with an HTTP status (404 for a
model that is not pulled, 400 for a bad request, 500 when the runner fails); a proxy
or ollama.com may answer ``{"error": {"message": ..., "type": ...}}`` or plain text.
Inside a 200 stream an error is a line ``{"error": "..."}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from llmkernel import errors
from llmkernel_http import (
    error_for_status,
    is_context_window_message,
    parse_retry_after,
    request_id_from,
)


def error_text(body: Any) -> tuple[str, str | None]:
    """The message and the error code/type (if any) from a decoded error body."""
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, str):
            return error, None
        if isinstance(error, Mapping):
            message = error.get("message")
            code = error.get("code") or error.get("type")
            return (
                message if isinstance(message, str) else json.dumps(error)[:500],
                code if isinstance(code, str) else None,
            )
        message = body.get("message")
        if isinstance(message, str):
            return message, None
    return "", None


def _is_context_overflow(message: str) -> bool:
    lowered = message.lower()
    return is_context_window_message(lowered) or (
        "exceeds" in lowered and ("context" in lowered or "token" in lowered)
    )


def error_for_response(
    status: int, body: bytes, headers: Mapping[str, str], *, provider: str, model: str
) -> errors.ProviderError:
    """The kernel error for an HTTP error answer from Ollama."""
    text = body.decode("utf-8", errors="replace")
    try:
        decoded: Any = json.loads(text)
    except ValueError:
        decoded = None
    message, code = error_text(decoded)
    if not message:
        snippet = " ".join(text.split())[:300]
        message = f"HTTP {status}: {snippet}" if snippet else f"HTTP {status}"
    request_id = request_id_from(headers)
    retry_after = parse_retry_after(headers)
    if status in (400, 413, 422, 500) and _is_context_overflow(message):
        return errors.ContextWindowExceededError(
            message,
            provider=provider,
            model=model,
            status=status,
            request_id=request_id,
            code=code,
        )
    error = error_for_status(
        status,
        message,
        provider=provider,
        model=model,
        code=code,
        request_id=request_id,
        retry_after=retry_after,
    )
    if isinstance(error, errors.ModelNotFoundError):
        lowered = message.lower()
        if "pull" in lowered:
            error.message = f"{message} (run `ollama pull {model}` on the server)"
        elif "page not found" in lowered:
            error.message = (
                f"{message} (check base_url: it is the server root, such as "
                "http://localhost:11434, without /api or /v1)"
            )
    return error


def error_in_body(
    message: str, *, provider: str, model: str, request_id: str | None
) -> errors.ProviderError:
    """An ``{"error": ...}`` object in a 200 answer (a line of a stream, or a whole
    body from a proxy): the model runner failed mid-answer."""
    lowered = message.lower()
    cls: type[errors.ProviderError]
    if _is_context_overflow(message):
        cls = errors.ContextWindowExceededError
    elif "not found" in lowered and "model" in lowered:
        cls = errors.ModelNotFoundError
    elif "overloaded" in lowered or "server busy" in lowered:
        cls = errors.OverloadedError
    else:
        cls = errors.ServerError
    return cls(
        f"Ollama reported an error: {message}",
        provider=provider,
        model=model,
        status=200,
        request_id=request_id,
    )
