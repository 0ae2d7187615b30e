"""The shared provider contract, against OpenAI's wire format on a fake server.

Payloads follow OpenAI's API reference: ``chat.completion`` and
``chat.completion.chunk`` objects, SSE ``data:`` lines ending with ``data: [DONE]``,
the usage-only last chunk of ``stream_options.include_usage``, and error bodies
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import llmkernel_openai.plugin
from llmkernel.types import ToolCall, Usage
from llmkernel_http.testing.contract import ProviderContract
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer, Gate, RecordedRequest

PATH = "/v1/chat/completions"
MODEL = "gpt-4o-mini"


def chunk(
    delta: dict[str, Any] | None = None,
    *,
    finish: str | None = None,
    usage: dict[str, Any] | None = None,
    empty: bool = False,
) -> str:
    body: dict[str, Any] = {
        "id": "chatcmpl-C1",
        "object": "chat.completion.chunk",
        "created": 1727000000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_0aa8d3e20b",
        "choices": []
        if empty
        else [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
    }
    return f"data: {json.dumps(body)}\n\n"


DONE = "data: [DONE]\n\n"


def wire_usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": usage.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion(message: dict[str, Any], finish: str, usage: Usage) -> dict[str, Any]:
    return {
        "id": "chatcmpl-C1",
        "object": "chat.completion",
        "created": 1727000000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "refusal": None, "annotations": [], **message},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": wire_usage(usage),
        "service_tier": "default",
        "system_fingerprint": "fp_0aa8d3e20b",
    }


ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "authentication": (
        401,
        {
            "message": "Incorrect API key provided: sk-abc***xyz.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        },
    ),
    "permission": (
        403,
        {
            "message": "Country, region, or territory not supported",
            "type": "request_forbidden",
            "param": None,
            "code": "unsupported_country_region_territory",
        },
    ),
    "not_found": (
        404,
        {
            "message": "The model `gpt-9` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        },
    ),
    "rate_limit": (
        429,
        {
            "message": "Rate limit reached for gpt-4o-mini in organization "
            "org-123 on requests per min (RPM): Limit 3, Used 3, "
            "Requested 1.",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        },
    ),
    "quota": (
        429,
        {
            "message": "You exceeded your current quota, please check your plan "
            "and billing details.",
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
        },
    ),
    "invalid_request": (
        400,
        {
            "message": "Invalid value for 'temperature': expected a number.",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": "invalid_value",
        },
    ),
    "context_window": (
        400,
        {
            "message": "This model's maximum context length is 128000 "
            "tokens. However, your messages resulted in 130412 "
            "tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        },
    ),
    "server": (
        500,
        {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": None,
            "code": None,
        },
    ),
    "overloaded": (
        503,
        {
            "message": "The engine is currently overloaded, please try again later.",
            "type": "server_error",
            "param": None,
            "code": None,
        },
    ),
}


def pieces_of(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text)


class TestOpenAIContract(ProviderContract):
    plugin = llmkernel_openai.plugin
    provider_type = "openai"
    model = MODEL
    supports_embeddings = True
    supports_models = True

    def options(self, server: FakeServer) -> dict[str, Any]:
        return {"base_url": server.url + "/v1"}

    def usage_sample(self) -> Usage:
        # prompt_tokens already counts the cached ones; completion_tokens the reasoning.
        return Usage(
            input_tokens=1200, output_tokens=345, cached_input_tokens=1024, reasoning_tokens=192
        )

    def script_text(
        self, server: FakeServer, text: str, usage: Usage, *, stream: bool, gate: Gate | None = None
    ) -> None:
        if not stream:
            server.expect(
                "POST",
                PATH,
                FakeResponse.json_body(
                    completion({"content": text}, "stop", usage),
                    headers={"x-request-id": "req_text"},
                ),
            )
            return
        pieces: list[Any] = [chunk({"role": "assistant", "content": "", "refusal": None})]
        for i, piece in enumerate(pieces_of(text)):
            pieces.append(chunk({"content": piece}))
            if i == 0 and gate is not None:
                pieces.append(gate)
        pieces += [chunk(finish="stop"), chunk(empty=True, usage=wire_usage(usage)), DONE]
        server.expect("POST", PATH, FakeResponse.sse(pieces))

    def script_tool_calls(self, server: FakeServer, calls: list[ToolCall], *, stream: bool) -> None:
        usage = Usage(input_tokens=80, output_tokens=40)
        if not stream:
            wire_calls = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
                }
                for c in calls
            ]
            server.expect(
                "POST",
                PATH,
                FakeResponse.json_body(
                    completion({"content": None, "tool_calls": wire_calls}, "tool_calls", usage)
                ),
            )
            return
        pieces = [chunk({"role": "assistant", "content": None})]
        for index, call in enumerate(calls):
            pieces.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": call.id,
                                "type": "function",
                                "function": {"name": call.name, "arguments": ""},
                            }
                        ]
                    }
                )
            )
            arguments = json.dumps(call.arguments)
            half = len(arguments) // 2
            for fragment in (arguments[:half], arguments[half:]):
                pieces.append(
                    chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
                )
        pieces += [chunk(finish="tool_calls"), chunk(empty=True, usage=wire_usage(usage)), DONE]
        server.expect("POST", PATH, FakeResponse.sse(pieces))

    def script_error(
        self, server: FakeServer, kind: str, *, stream: bool, retry_after: float | None = None
    ) -> None:
        status, error = ERRORS[kind]
        headers = {"x-request-id": f"req_{kind}"}
        if retry_after is not None:
            headers["retry-after-ms"] = str(int(retry_after * 1000))
        # OpenAI refuses a streamed request before streaming: the same status and body.
        server.expect(
            "POST", PATH, FakeResponse.json_body({"error": error}, status=status, headers=headers)
        )

    def script_cut_stream(self, server: FakeServer, *, reset: bool) -> None:
        pieces = [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hello"}),
            chunk({"content": " wor"}),
        ]
        server.expect("POST", PATH, FakeResponse.sse(pieces, truncate=not reset, reset=reset))

    def script_malformed(self, server: FakeServer, *, stream: bool) -> None:
        if stream:
            server.expect(
                "POST",
                PATH,
                FakeResponse.sse(
                    [
                        chunk({"role": "assistant", "content": ""}),
                        'data: {"id": "chatcmpl-C1", "cho\n\n',
                    ]
                ),
            )
        else:
            server.expect(
                "POST",
                PATH,
                FakeResponse.text_body(
                    "<html><body>upstream connect error</body></html>", content_type="text/html"
                ),
            )

    def script_models(self, server: FakeServer, ids: list[str]) -> None:
        server.expect(
            "GET",
            "/v1/models",
            FakeResponse.json_body(
                {
                    "object": "list",
                    "data": [
                        {"id": i, "object": "model", "created": 1686935002, "owned_by": "openai"}
                        for i in ids
                    ],
                }
            ),
        )

    def script_embeddings(self, server: FakeServer, vectors: list[list[float]]) -> None:
        server.expect(
            "POST",
            "/v1/embeddings",
            FakeResponse.json_body(
                {
                    "object": "list",
                    "data": [
                        {"object": "embedding", "index": i, "embedding": v}
                        for i, v in enumerate(vectors)
                    ],
                    "model": "text-embedding-3-small",
                    "usage": {"prompt_tokens": 4, "total_tokens": 4},
                }
            ),
        )

    def check_auth(self, request: RecordedRequest, api_key: str) -> None:
        assert request.headers["authorization"] == f"Bearer {api_key}"
        assert api_key not in request.target

    def check_tool_result_request(self, body: dict[str, Any]) -> None:
        assert body["messages"][1] == {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        }
        assert body["messages"][2] == {
            "role": "tool",
            "tool_call_id": "call_1",
            "content": "18C and sunny",
        }
        assert body["tools"][0]["function"]["name"] == "get_weather"
