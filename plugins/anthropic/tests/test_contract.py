"""The shared provider contract, over Anthropic's wire format."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any, ClassVar

from anthropic_wire import (
    block_start,
    block_stop,
    error_event,
    error_response,
    json_delta,
    message_delta,
    message_response,
    message_start,
    message_stop,
    models_page,
    sse_response,
    text_delta,
    text_stream,
    wire_usage,
)

import llmkernel_anthropic.plugin
from llmkernel.types import ToolCall, Usage
from llmkernel_http.testing.contract import ProviderContract
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer, Gate, RecordedRequest

MESSAGES = "/v1/messages"

ERRORS: dict[str, tuple[int, str, str]] = {
    "authentication": (401, "authentication_error", "invalid x-api-key"),
    "permission": (
        403,
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    "not_found": (404, "not_found_error", "model: claude-sonnet-4-5-20250929"),
    "rate_limit": (
        429,
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50 requests per minute.",
    ),
    "quota": (
        400,
        "invalid_request_error",
        "Your credit balance is too low to access the Anthropic API. Please go to Plans "
        "& Billing to upgrade or purchase credits.",
    ),
    "invalid_request": (
        400,
        "invalid_request_error",
        'messages: roles must alternate between "user" and "assistant"',
    ),
    "context_window": (
        400,
        "invalid_request_error",
        "prompt is too long: 208372 tokens > 200000 maximum",
    ),
    "server": (500, "api_error", "Internal server error"),
    "overloaded": (529, "overloaded_error", "Overloaded"),
}


class TestAnthropicContract(ProviderContract):
    plugin: ClassVar[ModuleType | object] = llmkernel_anthropic.plugin
    provider_type = "anthropic"
    model = "claude-sonnet-4-5-20250929"
    supports_embeddings = False
    supports_models = True

    def options(self, server: FakeServer) -> dict[str, Any]:
        return {"base_url": server.url}

    def usage_sample(self) -> Usage:
        # prompt caching: 1000 read from the cache, 200 written, 300 plain
        return Usage(
            input_tokens=1500, output_tokens=320, cached_input_tokens=1000, cache_write_tokens=200
        )

    def script_text(
        self, server: FakeServer, text: str, usage: Usage, *, stream: bool, gate: Gate | None = None
    ) -> None:
        wire = wire_usage(usage)
        if not stream:
            server.expect(
                "POST", MESSAGES, message_response([{"type": "text", "text": text}], usage=wire)
            )
            return
        cut = text.index(" ") if " " in text else len(text) // 2
        start = {**wire, "output_tokens": 1}
        pieces = text_stream(
            [text[:cut], text[cut:]],
            usage_start=start,
            usage_end={"output_tokens": usage.output_tokens},
            between=gate,
        )
        server.expect("POST", MESSAGES, sse_response(pieces))

    def script_tool_calls(self, server: FakeServer, calls: list[ToolCall], *, stream: bool) -> None:
        if not stream:
            content: list[dict[str, Any]] = [{"type": "text", "text": "Let me check both."}]
            content += [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": dict(c.arguments)}
                for c in calls
            ]
            server.expect("POST", MESSAGES, message_response(content, stop_reason="tool_use"))
            return
        pieces: list[Any] = [
            message_start(),
            block_start(0, {"type": "text", "text": ""}),
            text_delta(0, "Let me check both."),
            block_stop(0),
        ]
        for i, call in enumerate(calls, start=1):
            args = json.dumps(dict(call.arguments))
            pieces.append(
                block_start(i, {"type": "tool_use", "id": call.id, "name": call.name, "input": {}})
            )
            pieces.append(json_delta(i, ""))
            pieces += [json_delta(i, args[j : j + 5]) for j in range(0, len(args), 5)]
            pieces.append(block_stop(i))
        pieces += [message_delta("tool_use", {"output_tokens": 90}), message_stop()]
        server.expect("POST", MESSAGES, sse_response(pieces))

    def script_error(
        self, server: FakeServer, kind: str, *, stream: bool, retry_after: float | None = None
    ) -> None:
        status, error_type, text = ERRORS[kind]
        if stream and kind in ("server", "overloaded"):
            # Anthropic can fail after answering 200: an error event inside the stream
            pieces = [message_start(), error_event(error_type, text)]
            server.expect("POST", MESSAGES, sse_response(pieces))
            return
        headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
        server.expect("POST", MESSAGES, error_response(status, error_type, text, headers))

    def script_cut_stream(self, server: FakeServer, *, reset: bool) -> None:
        pieces = [
            message_start(),
            block_start(0, {"type": "text", "text": ""}),
            text_delta(0, "Hello"),
            text_delta(0, " wor"),
        ]
        server.expect("POST", MESSAGES, sse_response(pieces, truncate=not reset, reset=reset))

    def script_malformed(self, server: FakeServer, *, stream: bool) -> None:
        if stream:
            server.expect(
                "POST", MESSAGES, sse_response(["event: message_start\ndata: {not json at all\n\n"])
            )
        else:
            server.expect(
                "POST",
                MESSAGES,
                FakeResponse.text_body(
                    "<html><body>upstream went away</body></html>", content_type="text/html"
                ),
            )

    def script_models(self, server: FakeServer, ids: list[str]) -> None:
        server.expect("GET", "/v1/models", models_page(ids))

    def script_embeddings(self, server: FakeServer, vectors: list[list[float]]) -> None:
        raise AssertionError("Anthropic has no embeddings endpoint")

    def check_auth(self, request: RecordedRequest, api_key: str) -> None:
        assert request.headers["x-api-key"] == api_key
        assert request.headers["anthropic-version"] == "2023-06-01"
        assert "authorization" not in request.headers
        assert api_key not in request.target
        if request.method == "POST":
            body = request.json()
            assert body["model"] == self.model
            assert body["max_tokens"] == 4096

    def check_tool_result_request(self, body: dict[str, Any]) -> None:
        assert body["messages"] == [
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "call_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18C and sunny"},
                ],
            },
        ]
        assert body["tools"][0]["name"] == "get_weather"
        assert body["tools"][0]["input_schema"]["required"] == ["city"]
