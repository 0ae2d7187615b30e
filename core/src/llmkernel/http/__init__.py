"""Shared pieces for providers that speak HTTP: settings, client, sending and reading,
SSE/NDJSON, errors."""

from __future__ import annotations

from llmkernel.http.client import make_client
from llmkernel.http.errors import (
    error_for_status,
    error_for_transport,
    is_context_window_message,
    parse_duration,
    parse_retry_after,
    request_id_from,
)
from llmkernel.http.ndjson import aiter_ndjson
from llmkernel.http.settings import HTTPSettings
from llmkernel.http.sse import SSEDecoder, SSEEvent, aiter_sse
from llmkernel.http.transport import read_json, send

__all__ = [
    "HTTPSettings",
    "SSEDecoder",
    "SSEEvent",
    "aiter_ndjson",
    "aiter_sse",
    "error_for_status",
    "error_for_transport",
    "is_context_window_message",
    "make_client",
    "parse_duration",
    "parse_retry_after",
    "read_json",
    "request_id_from",
    "send",
]
