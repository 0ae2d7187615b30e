"""The shared provider contract against a fake Azure OpenAI: the v1 API and the
dated deployment URLs."""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from azure_wire import HEADERS, chunk, completion, error, prompt_filter_chunk, sse

import llmkernel_azure.plugin
from llmkernel.types import ToolCall, Usage
from llmkernel_http.testing.contract import ProviderContract
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer, Gate, RecordedRequest

ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "authentication": (
        401,
        {
            "error": {
                "code": "401",
                "message": "Access denied due to invalid subscription key or wrong API endpoint. "
                "Make sure to provide a valid key for an active subscription and use a correct "
                "regional API endpoint for your resource.",
            }
        },
    ),
    "permission": (
        403,
        {
            "error": {
                "code": "403",
                "message": "Public access is disabled. Please configure private endpoint.",
            }
        },
    ),
    "not_found": (
        404,
        {
            "error": {
                "code": "DeploymentNotFound",
                "message": "The API deployment for this resource does not exist. If you created "
                "the deployment within the last 5 minutes, please wait a moment and try again.",
            }
        },
    ),
    "rate_limit": (
        429,
        {
            "error": {
                "code": "429",
                "message": "Requests to the ChatCompletions_Create Operation under Azure OpenAI "
                "API version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 "
                "pricing tier. Please retry after 6 seconds.",
            }
        },
    ),
    "invalid_request": (
        400,
        {
            "error": {
                "message": "Invalid value for 'temperature': must be between 0 and 2.",
                "type": "invalid_request_error",
                "param": "temperature",
                "code": None,
            }
        },
    ),
    "context_window": (
        400,
        {
            "error": {
                "message": "This model's maximum context length is 128000 tokens. However, your "
                "messages resulted in 130512 tokens. Please reduce the length of the messages.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        },
    ),
    "server": (
        500,
        {
            "error": {
                "code": "InternalServerError",
                "message": "The server had an error while processing your request. "
                "Sorry about that!",
            }
        },
    ),
    "overloaded": (
        503,
        {
            "error": {
                "code": "ServiceUnavailable",
                "message": "The service is temporarily unable to process your request. "
                "Please try again later.",
            }
        },
    ),
}


class TestAzureV1Contract(ProviderContract):
    plugin: ClassVar[object] = llmkernel_azure.plugin
    provider_type = "azure"
    model = "gpt-4o-mini"
    api_key = "3f2a9c0e7b5d4e1f8a6c2b9d0e4f7a1c-SECRET"
    supports_embeddings = True
    # Azure words no quota error apart from its 429 rate limits.
    error_kinds = tuple(ERRORS)
    deployment = "chat-4o-mini"
    chat_path = "/openai/v1/chat/completions"
    prefix = "/openai/v1"

    def options(self, server: FakeServer) -> dict[str, Any]:
        return {"endpoint": server.url, "deployments": {"gpt-4o-mini": self.deployment}}

    def usage_sample(self) -> Usage:
        return Usage(
            input_tokens=1100, output_tokens=300, cached_input_tokens=1024, reasoning_tokens=64
        )

    def wire_usage(self, usage: Usage) -> dict[str, Any]:
        return {
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens,
            "prompt_tokens_details": {
                "cached_tokens": usage.cached_input_tokens,
                "audio_tokens": 0,
            },
            "completion_tokens_details": {
                "reasoning_tokens": usage.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def check_request(self, request: RecordedRequest) -> None:
        assert request.json()["model"] == self.deployment

    def expect(self, server: FakeServer, path: str, response: FakeResponse) -> None:
        def answer(request: RecordedRequest) -> FakeResponse:
            self.check_request(request)
            return response

        server.expect("POST", path, answer)

    def script_text(
        self, server: FakeServer, text: str, usage: Usage, *, stream: bool, gate: Gate | None = None
    ) -> None:
        if not stream:
            body = completion({"content": text}, usage=self.wire_usage(usage))
            self.expect(server, self.chat_path, FakeResponse.json_body(body, headers=HEADERS))
            return
        words = re.findall(r"\S+\s*", text)
        objects: list[Any] = [prompt_filter_chunk(), chunk({"role": "assistant", "content": ""})]
        objects.append(chunk({"content": words[0]}))
        if gate is not None:
            objects.append(gate)
        objects += [chunk({"content": w}) for w in words[1:]]
        objects.append(chunk({}, finish="stop"))
        objects.append(chunk(usage=self.wire_usage(usage)))
        self.expect(server, self.chat_path, sse(objects))

    def script_tool_calls(self, server: FakeServer, calls: list[ToolCall], *, stream: bool) -> None:
        wire = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(dict(c.arguments))},
            }
            for c in calls
        ]
        if not stream:
            body = completion({"content": None, "tool_calls": wire}, finish="tool_calls")
            self.expect(server, self.chat_path, FakeResponse.json_body(body, headers=HEADERS))
            return
        objects: list[Any] = [prompt_filter_chunk()]
        for index, call in enumerate(wire):
            arguments = call["function"]["arguments"]
            half = len(arguments) // 2
            first = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": arguments[:half]},
            }
            objects.append(chunk({"tool_calls": [first]}))
            objects.append(
                chunk(
                    {"tool_calls": [{"index": index, "function": {"arguments": arguments[half:]}}]}
                )
            )
        objects.append(chunk({}, finish="tool_calls"))
        self.expect(server, self.chat_path, sse(objects))

    def script_error(
        self, server: FakeServer, kind: str, *, stream: bool, retry_after: float | None = None
    ) -> None:
        status, body = ERRORS[kind]
        extra = {"retry-after": str(retry_after)} if retry_after is not None else {}
        server.expect("POST", self.chat_path, error(status, body, **extra))

    def script_cut_stream(self, server: FakeServer, *, reset: bool) -> None:
        objects: list[Any] = [
            prompt_filter_chunk(),
            chunk({"content": "Hello "}),
            chunk({"content": "there"}),
        ]
        server.expect(
            "POST", self.chat_path, sse(objects, done=False, truncate=not reset, reset=reset)
        )

    def script_malformed(self, server: FakeServer, *, stream: bool) -> None:
        html = "<html><body>502 Bad Gateway</body></html>\n"
        server.expect(
            "POST", self.chat_path, FakeResponse.text_body(html, content_type="text/html")
        )

    def script_models(self, server: FakeServer, ids: list[str]) -> None:
        data = [
            {
                "id": model_id,
                "object": "model",
                "created_at": 1721174400,
                "status": "succeeded",
                "capabilities": {"chat_completion": True, "completion": False, "embeddings": False},
                "lifecycle_status": "generally-available",
            }
            for model_id in ids
        ]
        server.expect(
            "GET",
            f"{self.prefix}/models",
            FakeResponse.json_body({"data": data, "object": "list"}, headers=HEADERS),
        )

    def script_embeddings(self, server: FakeServer, vectors: list[list[float]]) -> None:
        body = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
            ],
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 4, "total_tokens": 4},
        }
        self.expect(
            server,
            self.chat_path.replace("chat/completions", "embeddings"),
            FakeResponse.json_body(body, headers=HEADERS),
        )

    def check_auth(self, request: RecordedRequest, api_key: str) -> None:
        assert request.headers.get("api-key") == api_key
        assert "authorization" not in request.headers
        assert api_key not in request.target

    def check_tool_result_request(self, body: dict[str, Any]) -> None:
        assert body["messages"][1]["tool_calls"][0]["id"] == "call_1"
        assert body["messages"][1]["tool_calls"][0]["function"]["name"] == "get_weather"
        assert body["messages"][2] == {
            "role": "tool",
            "tool_call_id": "call_1",
            "content": "18C and sunny",
        }
        assert body["model"] == self.deployment


class TestAzureDeploymentsContract(TestAzureV1Contract):
    """The dated API: the deployment in the URL, ``api-version`` in the query."""

    chat_path = "/openai/deployments/chat-4o-mini/chat/completions"
    prefix = "/openai"

    def options(self, server: FakeServer) -> dict[str, Any]:
        return {**super().options(server), "api": "deployments"}

    def check_request(self, request: RecordedRequest) -> None:
        assert request.query == {"api-version": ["2024-10-21"]}

    def script_embeddings(self, server: FakeServer, vectors: list[list[float]]) -> None:
        body = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
            ],
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 4, "total_tokens": 4},
        }
        self.expect(
            server,
            "/openai/deployments/chat-4o-mini/embeddings",
            FakeResponse.json_body(body, headers=HEADERS),
        )
