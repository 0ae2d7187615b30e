"""Anthropic's token counting endpoint and the headers a gateway passes on.

``POST /v1/messages/count_tokens`` takes a Messages body's model, system, messages,
tools, tool_choice and thinking, and answers ``{"input_tokens": N}`` (Anthropic's API
reference, "Count message tokens", read 2026-12-07)."""

from __future__ import annotations

import pytest
from anthropic_wire import MODEL, Route, error_response, message_response, sse_response, text_stream

from llmkernel import errors
from llmkernel.types import ChatRequest, Message, Reasoning, Tool
from llmkernel_anthropic.provider import AnthropicProvider
from llmkernel_http.testing.fake_server import FakeResponse

WEATHER = Tool(
    name="get_weather",
    description="The weather.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


def request(**kwargs: object) -> ChatRequest:
    return ChatRequest(
        model=MODEL,
        messages=(Message.system("Be brief."), Message.user("How warm is Paris?")),
        **kwargs,  # type: ignore[arg-type]
    )


async def test_count_tokens_sends_what_a_message_would_and_reads_the_count(
    provider: AnthropicProvider, route: Route
) -> None:
    route.expect("POST", "/v1/messages/count_tokens", FakeResponse.json_body({"input_tokens": 42}))
    count = await provider.count_tokens(
        request(tools=(WEATHER,), reasoning=Reasoning(budget_tokens=2048), max_tokens=100)
    )
    assert count is not None
    assert (count.tokens, count.exact, count.method) == (42, True, "anthropic count_tokens")
    sent = route.body()
    assert sorted(sent) == ["messages", "model", "system", "thinking", "tools"]
    assert sent["system"] == "Be brief."
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert sent["tools"][0]["name"] == "get_weather"
    assert "max_tokens" not in sent and "stream" not in sent
    headers = route.requests[-1].headers
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["x-api-key"]


async def test_count_tokens_errors_are_the_kernels(
    provider: AnthropicProvider, route: Route
) -> None:
    route.expect(
        "POST",
        "/v1/messages/count_tokens",
        error_response(404, "not_found_error", f"model: {MODEL}"),
    )
    with pytest.raises(errors.ModelNotFoundError):
        await provider.count_tokens(request())


async def test_a_count_answer_without_input_tokens_is_malformed(
    provider: AnthropicProvider, route: Route
) -> None:
    route.expect("POST", "/v1/messages/count_tokens", FakeResponse.json_body({"tokens": 3}))
    with pytest.raises(errors.MalformedResponseError, match="input_tokens"):
        await provider.count_tokens(request())


async def test_version_and_betas_from_metadata_are_sent_as_headers(
    route: Route, api_key: str
) -> None:
    from anthropic_wire import make_provider

    provider = make_provider(route.base_url, beta=["prompt-caching-2024-07-31"])
    route.expect("POST", "/v1/messages", message_response([{"type": "text", "text": "hi"}]))
    route.expect(
        "POST",
        "/v1/messages",
        sse_response(
            text_stream(
                ["h", "i"],
                usage_start={"input_tokens": 3, "output_tokens": 1},
                usage_end={"output_tokens": 2},
            )
        ),
    )
    metadata = {
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "interleaved-thinking-2025-05-14, prompt-caching-2024-07-31",
        "tenant": "t",
    }
    try:
        answer = await provider.chat(request(metadata=metadata))
        events = [e async for e in provider.stream(request(metadata=metadata))]
    finally:
        await provider.aclose()
    assert answer.text == "hi"
    assert "".join(e.text for e in events if e.type == "text") == "hi"
    for sent in route.requests:
        assert sent.headers["anthropic-beta"] == (
            "prompt-caching-2024-07-31,interleaved-thinking-2025-05-14"
        )
        assert sent.headers["anthropic-version"] == "2023-06-01"
        assert "tenant" not in sent.body.decode()  # metadata itself never goes upstream


async def test_without_metadata_only_the_configured_betas_go(route: Route, api_key: str) -> None:
    from anthropic_wire import make_provider

    provider = make_provider(route.base_url, beta=["context-1m-2025-08-07"])
    route.expect("POST", "/v1/messages", message_response([{"type": "text", "text": "ok"}]))
    try:
        await provider.chat(request())
    finally:
        await provider.aclose()
    assert route.requests[-1].headers["anthropic-beta"] == "context-1m-2025-08-07"
