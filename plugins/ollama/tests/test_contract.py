"""The shared provider contract, run against Ollama's native wire format."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from ollama_wire import call, chunk, close_later, final, pieces, tags

import llmkernel_ollama.plugin
from llmkernel.types import ToolCall, Usage
from llmkernel_http.testing.contract import ProviderContract
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer, Gate, RecordedRequest

ERRORS = {
    "authentication": (401, "unauthorized"),
    "permission": (403, "this model requires a subscription"),
    "not_found": (404, 'model "llama3.2" not found, try pulling it first'),
    "rate_limit": (429, "too many requests, please slow down"),
    "invalid_request": (400, "registry.ollama.ai/library/llama3.2:latest does not support tools"),
    "context_window": (400, "the input length exceeds the context length"),
    "server": (500, "llama runner process has terminated: exit status 2"),
    "overloaded": (503, "server busy, please try again.  maximum pending requests exceeded"),
}


class TestOllamaContract(ProviderContract):
    plugin: ClassVar[object] = llmkernel_ollama.plugin
    provider_type = "ollama"
    model = "llama3.2"
    supports_embeddings = True
    # Ollama has no quota/billing error shape (no error codes at all).
    error_kinds = tuple(ERRORS)

    @pytest.fixture
    def server(self) -> Iterator[FakeServer]:
        # As the contract's fixture, without waiting 0.5 s for the server to stop.
        fake = FakeServer()
        yield fake
        close_later(fake)

    def options(self, server: FakeServer) -> dict[str, Any]:
        return {"base_url": server.url}

    def usage_sample(self) -> Usage:
        return Usage(input_tokens=26, output_tokens=298)

    def script_text(
        self, server: FakeServer, text: str, usage: Usage, *, stream: bool, gate: Gate | None = None
    ) -> None:
        def check(request: RecordedRequest, response: FakeResponse) -> FakeResponse:
            assert request.json()["stream"] is stream
            return response

        if not stream:
            body = final(
                self.model, content=text, prompt=usage.input_tokens, output=usage.output_tokens
            )
            response = FakeResponse.json_body(body)
        else:
            parts = pieces(text)
            objects: list[Any] = [chunk(self.model, content=parts[0])]
            if gate is not None:
                objects.append(gate)
            objects += [chunk(self.model, content=p) for p in parts[1:]]
            objects.append(final(self.model, prompt=usage.input_tokens, output=usage.output_tokens))
            response = FakeResponse.ndjson(objects)
        server.expect("POST", "/api/chat", lambda r: check(r, response))

    def script_tool_calls(self, server: FakeServer, calls: list[ToolCall], *, stream: bool) -> None:
        # Ollama sends no call ids; the provider makes them (call_0, call_1...).
        wire = [call(c.name, dict(c.arguments), index=i) for i, c in enumerate(calls)]
        if not stream:
            server.expect(
                "POST",
                "/api/chat",
                FakeResponse.json_body(final(self.model, tool_calls=wire, prompt=122, output=33)),
            )
            return
        # Streaming: each call arrives whole in its own chunk, then the done object.
        objects: list[Any] = [chunk(self.model, tool_calls=[w]) for w in wire]
        objects.append(final(self.model, prompt=122, output=33))
        server.expect("POST", "/api/chat", FakeResponse.ndjson(objects))

    def script_error(
        self, server: FakeServer, kind: str, *, stream: bool, retry_after: float | None = None
    ) -> None:
        status, message = ERRORS[kind]
        headers = {"retry-after": str(retry_after)} if retry_after is not None else None
        server.expect(
            "POST",
            "/api/chat",
            FakeResponse.json_body({"error": message}, status=status, headers=headers),
        )

    def script_cut_stream(self, server: FakeServer, *, reset: bool) -> None:
        objects = [chunk(self.model, content="Hello "), chunk(self.model, content="there")]
        server.expect(
            "POST", "/api/chat", FakeResponse.ndjson(objects, truncate=not reset, reset=reset)
        )

    def script_malformed(self, server: FakeServer, *, stream: bool) -> None:
        html = "<html><body>502 Bad Gateway</body></html>\n"
        if stream:
            server.expect(
                "POST",
                "/api/chat",
                FakeResponse(status=200, headers={"content-type": "text/html"}, pieces=[html]),
            )
        else:
            server.expect(
                "POST", "/api/chat", FakeResponse.text_body(html, content_type="text/html")
            )

    def script_models(self, server: FakeServer, ids: list[str]) -> None:
        server.expect("GET", "/api/tags", FakeResponse.json_body(tags(ids)))

    def script_embeddings(self, server: FakeServer, vectors: list[list[float]]) -> None:
        def answer(request: RecordedRequest) -> FakeResponse:
            body = request.json()
            assert body["input"] == ["one", "two"]
            return FakeResponse.json_body(
                {
                    "model": body["model"],
                    "embeddings": vectors,
                    "total_duration": 14143917,
                    "load_duration": 1019500,
                    "prompt_eval_count": 8,
                }
            )

        server.expect("POST", "/api/embed", answer)

    def check_auth(self, request: RecordedRequest, api_key: str) -> None:
        assert request.headers.get("authorization") == f"Bearer {api_key}"
        assert api_key not in request.target

    def check_tool_result_request(self, body: dict[str, Any]) -> None:
        assert body["messages"][1] == {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}},
                }
            ],
        }
        assert body["messages"][2] == {
            "role": "tool",
            "content": "18C and sunny",
            "tool_name": "get_weather",
            "tool_call_id": "call_1",
        }
        assert body["tools"][0]["function"]["name"] == "get_weather"
