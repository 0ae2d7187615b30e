"""The shared provider contract, run against Gemini's wire format."""

from __future__ import annotations

from types import ModuleType
from typing import Any, ClassVar

import gemini_wire as wire

import llmkernel_gemini.plugin
from llmkernel.types import ToolCall, Usage
from llmkernel_http.testing.contract import ProviderContract
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer, Gate, RecordedRequest


class TestGeminiContract(ProviderContract):
    plugin: ClassVar[ModuleType] = llmkernel_gemini.plugin
    provider_type = "gemini"
    model = wire.MODEL
    supports_embeddings = True
    supports_models = True

    def options(self, server: FakeServer) -> dict[str, Any]:
        return {"base_url": server.url}

    def usage_sample(self) -> Usage:
        # cache reads and thinking, as a 2.5 model reports them
        return Usage(
            input_tokens=120, output_tokens=57, cached_input_tokens=40, reasoning_tokens=20
        )

    def script_text(
        self, server: FakeServer, text: str, usage: Usage, *, stream: bool, gate: Gate | None = None
    ) -> None:
        metadata = wire.usage_metadata(usage)
        if not stream:
            body = wire.response([{"text": text}], usage=metadata)
            server.expect("POST", wire.path(), FakeResponse.json_body(body))
            return
        head, _, tail = text.partition(" ")
        early = {
            "promptTokenCount": metadata["promptTokenCount"],
            "totalTokenCount": metadata["promptTokenCount"],
        }
        pieces: list[Any] = [wire.response([{"text": head}], finish=None, usage=early)]
        if gate is not None:
            pieces.append(gate)
        pieces.append(wire.response([{"text": " " + tail}], usage=metadata))
        server.expect(
            "POST", wire.path(method="streamGenerateContent"), wire.stream_response(*pieces)
        )

    def script_tool_calls(self, server: FakeServer, calls: list[ToolCall], *, stream: bool) -> None:
        parts = [
            wire.call_part(c.name, dict(c.arguments), signature="sig-0" if i == 0 else None)
            for i, c in enumerate(calls)
        ]
        usage = wire.usage_metadata(Usage(input_tokens=30, output_tokens=12))
        if not stream:
            server.expect(
                "POST", wire.path(), FakeResponse.json_body(wire.response(parts, usage=usage))
            )
            return
        chunks = [wire.response([part], finish=None) for part in parts[:-1]]
        chunks.append(wire.response(parts[-1:], usage=usage))
        server.expect(
            "POST", wire.path(method="streamGenerateContent"), wire.stream_response(*chunks)
        )

    def script_error(
        self, server: FakeServer, kind: str, *, stream: bool, retry_after: float | None = None
    ) -> None:
        delay = f"{retry_after}s" if retry_after is not None else None
        method = "streamGenerateContent" if stream else "generateContent"
        server.expect(
            "POST", wire.path(method=method), wire.error_response(kind, retry_delay=delay)
        )

    def script_cut_stream(self, server: FakeServer, *, reset: bool) -> None:
        pieces = wire.sse(
            wire.response([{"text": "Hello"}], finish=None),
            wire.response([{"text": " there"}], finish=None),
        )
        server.expect(
            "POST",
            wire.path(method="streamGenerateContent"),
            FakeResponse.sse(pieces, truncate=not reset, reset=reset),
        )

    def script_malformed(self, server: FakeServer, *, stream: bool) -> None:
        if stream:
            server.expect(
                "POST",
                wire.path(method="streamGenerateContent"),
                FakeResponse.sse(['data: {"candidates": [{"content\r\n\r\n']),
            )
        else:
            server.expect(
                "POST",
                wire.path(),
                FakeResponse.text_body(
                    "<html>upstream error</html>", content_type="application/json"
                ),
            )

    def script_models(self, server: FakeServer, ids: list[str]) -> None:
        pages = [ids[i : i + 1] for i in range(len(ids))] or [[]]

        def handler(request: RecordedRequest) -> FakeResponse:
            token = request.query.get("pageToken", ["0"])[0]
            index = int(token)
            next_token = str(index + 1) if index + 1 < len(pages) else None
            return FakeResponse.json_body(wire.models_page(pages[index], next_token))

        server.expect("GET", "/v1beta/models", handler)

    def script_embeddings(self, server: FakeServer, vectors: list[list[float]]) -> None:
        def handler(request: RecordedRequest) -> FakeResponse:
            items = request.json()["requests"]
            assert [i["content"]["parts"][0]["text"] for i in items] == ["one", "two"]
            assert all(i["model"] == f"models/{wire.MODEL}" for i in items)
            return FakeResponse.json_body({"embeddings": [{"values": v} for v in vectors]})

        server.expect("POST", wire.path(method="batchEmbedContents"), handler)

    def check_auth(self, request: RecordedRequest, api_key: str) -> None:
        assert request.headers["x-goog-api-key"] == api_key
        assert "authorization" not in request.headers
        assert api_key not in request.target, "the key must never be in the URL"
        assert "key" not in request.query

    def check_tool_result_request(self, body: dict[str, Any]) -> None:
        assert body["contents"] == [
            {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
            {
                "role": "model",
                "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}],
            },
            {
                "role": "user",
                "parts": [
                    {
                        "functionResponse": {
                            "name": "get_weather",
                            "response": {"result": "18C and sunny"},
                        }
                    }
                ],
            },
        ]
        declaration = body["tools"][0]["functionDeclarations"][0]
        assert declaration["name"] == "get_weather"
