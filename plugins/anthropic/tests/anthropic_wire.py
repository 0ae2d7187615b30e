"""Anthropic's wire format for the fake server, written from the API reference.

Non-streaming: ``{"id", "type": "message", "role": "assistant", "model", "content":
[...], "stop_reason", "stop_sequence", "usage"}``. Streaming: named SSE events
(``event: message_start`` + ``data: {"type": "message_start", ...}``). Errors:
``{"type": "error", "error": {"type", "message"}, "request_id"}``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

from llmkernel.provider import ProviderConfig
from llmkernel.types import Usage
from llmkernel_anthropic.provider import AnthropicProvider
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer, Piece, RecordedRequest

MODEL = "claude-sonnet-4-5-20250929"
MSG_ID = "msg_01XFDUDYJgAACzvnptvVoYEL"
REQUEST_ID = "req_018EeWyXxfu5pfWkrYcMdjWG"


def wire_usage(usage: Usage) -> dict[str, int]:
    """A kernel usage as Anthropic reports it: ``input_tokens`` without the cache."""
    return {
        "input_tokens": usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_input_tokens,
        "output_tokens": usage.output_tokens,
    }


def message(
    content: list[dict[str, Any]],
    *,
    stop_reason: str = "end_turn",
    usage: dict[str, Any] | None = None,
    model: str = MODEL,
    message_id: str = MSG_ID,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage or {"input_tokens": 10, "output_tokens": 5},
        **extra,
    }


def message_response(content: list[dict[str, Any]], **kwargs: Any) -> FakeResponse:
    return FakeResponse.json_body(message(content, **kwargs), headers={"request-id": REQUEST_ID})


def event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def message_start(
    usage: dict[str, Any] | None = None, *, model: str = MODEL, message_id: str = MSG_ID
) -> str:
    return event(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": usage or {"input_tokens": 10, "output_tokens": 1},
            },
        },
    )


def block_start(index: int, block: dict[str, Any]) -> str:
    return event(
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def delta(index: int, payload: dict[str, Any]) -> str:
    return event(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": payload}
    )


def text_delta(index: int, text: str) -> str:
    return delta(index, {"type": "text_delta", "text": text})


def json_delta(index: int, fragment: str) -> str:
    return delta(index, {"type": "input_json_delta", "partial_json": fragment})


def block_stop(index: int) -> str:
    return event("content_block_stop", {"type": "content_block_stop", "index": index})


def message_delta(stop_reason: str, usage: dict[str, Any], **delta_extra: Any) -> str:
    return event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None, **delta_extra},
            "usage": usage,
        },
    )


def message_stop() -> str:
    return event("message_stop", {"type": "message_stop"})


def ping() -> str:
    return event("ping", {"type": "ping"})


def error_event(kind: str, text: str) -> str:
    return event("error", {"type": "error", "error": {"type": kind, "message": text}})


def text_stream(
    pieces: list[str],
    *,
    usage_start: dict[str, Any],
    usage_end: dict[str, Any],
    stop_reason: str = "end_turn",
    between: Piece | None = None,
) -> list[Piece]:
    """A whole text answer as SSE pieces; ``between`` goes after the first text piece."""
    out: list[Piece] = [
        message_start(usage_start),
        block_start(0, {"type": "text", "text": ""}),
        ping(),
    ]
    for i, piece in enumerate(pieces):
        out.append(text_delta(0, piece))
        if i == 0 and between is not None:
            out.append(between)
    out += [block_stop(0), message_delta(stop_reason, usage_end), message_stop()]
    return out


def sse_response(pieces: Sequence[Piece], **kwargs: Any) -> FakeResponse:
    return FakeResponse.sse(pieces, headers={"request-id": REQUEST_ID}, **kwargs)


def error_response(
    status: int, kind: str, text: str, headers: dict[str, str] | None = None
) -> FakeResponse:
    return FakeResponse.json_body(
        {"type": "error", "error": {"type": kind, "message": text}, "request_id": REQUEST_ID},
        status=status,
        headers={"request-id": REQUEST_ID, **(headers or {})},
    )


def models_page(ids: list[str], *, has_more: bool = False) -> FakeResponse:
    return FakeResponse.json_body(
        {
            "data": [
                {
                    "type": "model",
                    "id": i,
                    "display_name": i.replace("-", " ").title(),
                    "created_at": "2025-02-19T00:00:00Z",
                }
                for i in ids
            ],
            "has_more": has_more,
            "first_id": ids[0] if ids else None,
            "last_id": ids[-1] if ids else None,
        }
    )


# --------------------------------------------------------------------------- routing

API_KEY = "sk-ant-api03-TEST-SECRET-0123456789"
_counter = itertools.count()


class Route:
    """A private corner of the shared fake server: ``/t<n>`` + the API paths."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.prefix = f"/t{next(_counter)}"

    @property
    def base_url(self) -> str:
        return self.server.url + self.prefix

    def expect(self, method: str, path: str, *responses: FakeResponse) -> None:
        self.server.expect(method, self.prefix + path, *responses)

    @property
    def requests(self) -> list[RecordedRequest]:
        return [r for r in self.server.requests if r.path.startswith(self.prefix + "/")]

    def body(self, index: int = -1) -> Any:
        return self.requests[index].json()


def make_provider(base_url: str, **options: Any) -> AnthropicProvider:
    return AnthropicProvider(
        ProviderConfig(name="p", type="anthropic", options={"base_url": base_url, **options})
    )
