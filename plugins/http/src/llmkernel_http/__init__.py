"""llmkernel-http: shared pieces for providers that speak HTTP: the :class:`HTTPProvider`
base class, settings, client and transport, sending and reading, SSE/NDJSON, errors, rate-limit
headers, secret redaction and small wire readers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel.lazy import lazy_exports

# light, and imported now: the function `redact` shares its module's name
from llmkernel_http.redact import REDACTED, Secrets, collect_secrets, redact, scrub

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "llmkernel_http.aiohttp_transport": ["AiohttpTransport"],
        "llmkernel_http.body": ["UnreadableBody"],
        "llmkernel_http.client": ["default_transport", "make_client"],
        "llmkernel_http.errors": [
            "error_for_status",
            "error_for_transport",
            "error_in_stream",
            "is_context_window_message",
            "parse_duration",
            "parse_retry_after",
            "request_id_from",
        ],
        "llmkernel_http.ndjson": ["aiter_ndjson"],
        "llmkernel_http.provider": ["HTTPProvider", "headers_of"],
        "llmkernel_http.ratelimit": [
            "RateLimitInfo",
            "parse_ratelimit_headers",
            "parse_reset_duration",
            "parse_reset_time",
        ],
        "llmkernel_http.settings": ["HTTPSettings"],
        "llmkernel_http.sse": ["SSEDecoder", "SSEEvent", "aiter_sse"],
        "llmkernel_http.transport": ["read_json", "send"],
        "llmkernel_http.wire": [
            "capabilities_by_prefix",
            "parse_arguments",
            "snippet",
            "split_data_url",
            "token_count",
        ],
    },
)

if TYPE_CHECKING:
    from llmkernel_http.aiohttp_transport import AiohttpTransport
    from llmkernel_http.body import UnreadableBody
    from llmkernel_http.client import default_transport, make_client
    from llmkernel_http.errors import (
        error_for_status,
        error_for_transport,
        error_in_stream,
        is_context_window_message,
        parse_duration,
        parse_retry_after,
        request_id_from,
    )
    from llmkernel_http.ndjson import aiter_ndjson
    from llmkernel_http.provider import HTTPProvider, headers_of
    from llmkernel_http.ratelimit import (
        RateLimitInfo,
        parse_ratelimit_headers,
        parse_reset_duration,
        parse_reset_time,
    )
    from llmkernel_http.settings import HTTPSettings
    from llmkernel_http.sse import SSEDecoder, SSEEvent, aiter_sse
    from llmkernel_http.transport import read_json, send
    from llmkernel_http.wire import (
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
    "UnreadableBody",
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
