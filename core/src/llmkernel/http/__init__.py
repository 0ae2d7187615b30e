"""Shared pieces for providers that speak HTTP: the :class:`HTTPProvider` base class,
settings, client and transport, sending and reading, SSE/NDJSON, errors, rate-limit
headers, secret redaction and small wire readers."""

from __future__ import annotations

from llmkernel.http.aiohttp_transport import AiohttpTransport
from llmkernel.http.client import default_transport, make_client
from llmkernel.http.errors import (
    error_for_status,
    error_for_transport,
    error_in_stream,
    is_context_window_message,
    parse_duration,
    parse_retry_after,
    request_id_from,
)
from llmkernel.http.ndjson import aiter_ndjson
from llmkernel.http.provider import HTTPProvider, headers_of
from llmkernel.http.ratelimit import (
    RateLimitInfo,
    parse_ratelimit_headers,
    parse_reset_duration,
    parse_reset_time,
)
from llmkernel.http.redact import REDACTED, Secrets, collect_secrets, redact, scrub
from llmkernel.http.settings import HTTPSettings
from llmkernel.http.sse import SSEDecoder, SSEEvent, aiter_sse
from llmkernel.http.transport import read_json, send
from llmkernel.http.wire import (
    capabilities_by_prefix,
    parse_arguments,
    snippet,
    split_data_url,
    token_count,
)

__all__ = [
    "REDACTED",
    "AiohttpTransport",
    "HTTPProvider",
    "HTTPSettings",
    "RateLimitInfo",
    "SSEDecoder",
    "SSEEvent",
    "Secrets",
    "aiter_ndjson",
    "aiter_sse",
    "capabilities_by_prefix",
    "collect_secrets",
    "default_transport",
    "error_for_status",
    "error_for_transport",
    "error_in_stream",
    "headers_of",
    "is_context_window_message",
    "make_client",
    "parse_arguments",
    "parse_duration",
    "parse_ratelimit_headers",
    "parse_reset_duration",
    "parse_reset_time",
    "parse_retry_after",
    "read_json",
    "redact",
    "request_id_from",
    "scrub",
    "send",
    "snippet",
    "split_data_url",
    "token_count",
]
