"""Gemini's ``models.countTokens``: ``POST /v1beta/{model}:countTokens`` with a
``generateContentRequest`` (model, contents, system instruction, tools), answering
``{"totalTokens": N, ...}`` (https://ai.google.dev/api/tokens, read 2026-12-07)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import gemini_wire as wire
import pytest

from llmkernel import errors
from llmkernel.provider import ProviderConfig
from llmkernel.types import ChatRequest, Message, Tool
from llmkernel_gemini.provider import GeminiProvider
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer

KEY_ENV = "LLMKERNEL_GEMINI_TEST_KEY"
COUNT = wire.path(method="countTokens")
WEATHER = Tool(
    name="get_weather",
    description="The weather.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


@pytest.fixture
async def provider(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[GeminiProvider]:
    monkeypatch.setenv(KEY_ENV, wire.API_KEY)
    options: dict[str, Any] = {"base_url": server.url, "api_key_env": KEY_ENV}
    instance = GeminiProvider(ProviderConfig(name="g", type="gemini", options=options))
    yield instance
    await instance.aclose()


def ask(**kwargs: Any) -> ChatRequest:
    messages = (Message.system("Be brief."), Message.user("How warm is Paris?"))
    return ChatRequest(model=wire.MODEL, messages=messages, **kwargs)


async def test_count_tokens_sends_the_generate_request_and_reads_total_tokens(
    provider: GeminiProvider, server: FakeServer
) -> None:
    server.expect(
        "POST",
        COUNT,
        FakeResponse.json_body(
            {"totalTokens": 31, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 31}]}
        ),
    )
    count = await provider.count_tokens(ask(tools=(WEATHER,), max_tokens=50, temperature=0.2))
    assert count is not None
    assert (count.tokens, count.exact, count.method) == (31, True, "gemini countTokens")
    sent = server.requests[-1]
    assert sent.headers["x-goog-api-key"] == wire.API_KEY
    inner = sent.json()["generateContentRequest"]
    assert inner["model"] == f"models/{wire.MODEL}"
    assert inner["systemInstruction"]["parts"][0]["text"] == "Be brief."
    assert inner["contents"][0]["parts"][0]["text"] == "How warm is Paris?"
    assert inner["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    assert "generationConfig" not in inner  # sampling settings are not counted


async def test_count_errors_are_the_kernels(provider: GeminiProvider, server: FakeServer) -> None:
    server.expect("POST", COUNT, wire.error_response("not_found"))
    with pytest.raises(errors.ModelNotFoundError):
        await provider.count_tokens(ask())


async def test_an_answer_without_total_tokens_is_malformed(
    provider: GeminiProvider, server: FakeServer
) -> None:
    server.expect("POST", COUNT, FakeResponse.json_body({"tokens": 4}))
    with pytest.raises(errors.MalformedResponseError):
        await provider.count_tokens(ask())
