"""The mock provider through a real kernel, loaded from its entry point."""

from __future__ import annotations

import time
from typing import Any

import pytest

from llmkernel import Kernel, errors
from llmkernel_mock import MockProvider, MockReply

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}


def kernel_with(**options: Any) -> Kernel:
    import llmkernel_mock.plugin

    # the mock alone: no breaker or other installed plugin shaping the failures
    return Kernel.from_config(
        {
            "providers": {"sim": {"type": "mock", **options}},
            "retry": {"attempts": 1},
        },
        plugins=[llmkernel_mock.plugin],
        entry_points=False,
    )


def mock(kernel: Kernel) -> MockProvider:
    provider = kernel.provider("sim")
    assert isinstance(provider, MockProvider)
    return provider


def test_found_by_entry_point_and_the_offline_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLMKERNEL_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    with Kernel.from_config() as kernel:
        assert {p.name: p.status for p in kernel.plugins}["mock"] == "loaded"
        response = kernel.chat(messages="echo me")
    assert response.text == "echo me"
    assert (response.provider, response.model) == ("mock", "echo")


async def test_deterministic_for_a_seed() -> None:
    async def answer(seed: int) -> str:
        async with kernel_with(seed=seed) as kernel:
            return (await kernel.achat(model="sim/anything", messages="tell me")).text

    assert await answer(1) == await answer(1)
    assert await answer(1) != await answer(2)


async def test_generated_length_usage_and_max_tokens() -> None:
    async with kernel_with(output_tokens=30) as kernel:
        full = await kernel.achat(model="sim/chat", messages="go")
        cut = await kernel.achat(model="sim/chat", messages="go", max_tokens=5)
    assert len(full.text.split()) == 30 and full.usage.output_tokens == 30
    assert full.usage.input_tokens > 0 and full.cost == 0
    assert len(cut.text.split()) == 5 and cut.finish_reason == "length"


async def test_stream_pacing_and_time_to_first_token() -> None:
    async with kernel_with(
        time_to_first_token=0.2, tokens_per_second=50, output_tokens=10
    ) as kernel:
        started = time.monotonic()
        stream = kernel.astream(model="sim/chat", messages="go")
        first_at = None
        texts = []
        async for event in stream:
            if event.type == "text":
                first_at = first_at or time.monotonic() - started
                texts.append(event.text)
        total = time.monotonic() - started
    assert first_at is not None and first_at >= 0.19
    assert total >= 0.2 + 9 / 50 - 0.01
    assert len(texts) == 10 and stream.response is not None
    assert "".join(texts) == stream.response.text


async def test_latency() -> None:
    async with kernel_with(latency=0.15) as kernel:
        response = await kernel.achat(model="sim/chat", messages="go")
    assert response.latency >= 0.14


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("rate_limit", errors.RateLimitError),
        ("server", errors.ServerError),
        ("overloaded", errors.OverloadedError),
        ("timeout", errors.TimeoutError),
        ("network", errors.NetworkError),
        ("authentication", errors.AuthenticationError),
    ],
)
async def test_failure_kinds(kind: str, cls: type[errors.ProviderError]) -> None:
    async with kernel_with(failure_rate=1.0, error_kinds=[kind], retry_after=2.5) as kernel:
        with pytest.raises(cls) as info:
            await kernel.achat(model="sim/chat", messages="go")
    assert info.value.provider == "sim" and info.value.model == "chat"
    if kind == "rate_limit":
        assert info.value.status == 429 and info.value.retry_after == 2.5
    if kind == "overloaded":
        assert info.value.status == 529


async def test_failure_rate_is_a_share_of_calls() -> None:
    async with kernel_with(failure_rate=0.5, error_kinds=["server"], seed=3) as kernel:
        outcomes = []
        for _ in range(200):
            try:
                await kernel.achat(model="sim/chat", messages="go")
                outcomes.append(True)
            except errors.ServerError:
                outcomes.append(False)
    assert 60 < outcomes.count(False) < 140


async def test_mid_stream_failure_ends_with_an_error_event() -> None:
    async with kernel_with(failure_rate=1.0, error_kinds=["mid_stream"]) as kernel:
        events = []
        with pytest.raises(errors.NetworkError):
            async for event in kernel.astream(model="sim/chat", messages="go"):
                events.append(event.type)
    assert events[:2] == ["text", "text"] and events[-1] == "error"


async def test_tool_calls_then_tool_result() -> None:
    async with kernel_with() as kernel:
        first = await kernel.achat(model="sim/chat", messages="weather?", tools=[WEATHER])
        call = first.tool_calls[0]
        second = await kernel.achat(
            model="sim/chat",
            tools=[WEATHER],
            messages=[
                {"role": "user", "content": "weather?"},
                first.message,
                {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
            ],
        )
        stream = kernel.astream(model="sim/chat", messages="weather?", tools=[WEATHER])
        deltas = [e async for e in stream if e.type == "tool_call"]
    assert first.finish_reason == "tool_calls" and call.name == "get_weather"
    assert set(call.arguments) == {"city", "days"} and isinstance(call.arguments["days"], int)
    assert second.text == "The tool returned: sunny"
    assert len(deltas) == 2 and stream.response is not None
    assert stream.response.tool_calls == first.tool_calls


async def test_structured_output_and_reasoning() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    async with kernel_with() as kernel:
        response = await kernel.achat(
            model="sim/chat",
            messages="a person",
            reasoning="high",
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "person", "schema": schema},
            },
        )
    assert set(response.parsed) == {"name", "age"}
    assert response.reasoning and response.usage.reasoning_tokens > 0
    assert response.message.content[0].signature


async def test_embeddings_deterministic() -> None:
    async with kernel_with(embedding_dimensions=4) as kernel:
        one = await kernel.aembed(model="sim/embed", input=["a", "b"])
        two = await kernel.aembed(model="sim/embed", input="a", dimensions=6)
    assert len(one.vectors) == 2 and len(one.vectors[0]) == 4
    assert two.vectors[0][:4] == one.vectors[0] and len(two.vectors[0]) == 6


async def test_enqueue_and_history_script_exact_answers() -> None:
    kernel = Kernel.from_config(
        {
            "providers": {"sim": {"type": "mock"}},
            "retry": {"attempts": 3, "initial_wait": 0, "max_wait": 0},
        }
    )
    sim = mock(kernel)
    sim.enqueue(
        errors.RateLimitError("slow", retry_after=0.0),
        "second try",
        MockReply(text="a b c", fail_after=1, error=errors.NetworkError("cut")),
    )
    async with kernel:
        response = await kernel.achat(model="sim/x", messages="first")
        with pytest.raises(errors.NetworkError):
            async for _ in kernel.astream(model="sim/x", messages="second"):
                pass
    assert response.text == "second try" and response.attempts == 2
    assert [r.messages[-1].text for r in sim.history] == ["first", "first", "second"]


def test_bad_options_are_refused() -> None:
    with pytest.raises(errors.ConfigError, match="failure_rate"):
        kernel_with(failure_rate=2)
    with pytest.raises(errors.ConfigError, match="error_kinds"):
        kernel_with(error_kinds=["meteor"])


async def test_headers_on_responses_streams_embeddings_and_errors() -> None:
    from llmkernel import Kernel, errors
    from llmkernel_mock import plugin

    headers = {"X-RateLimit-Remaining-Requests": "99", "x-ratelimit-reset-tokens": "6m0s"}
    config = {
        "providers": {
            "m": {"type": "mock", "headers": headers},
            "bad": {"type": "mock", "headers": headers, "failure_rate": 1.0},
        },
        "retry": {"attempts": 1},
    }
    expected = {"x-ratelimit-remaining-requests": "99", "x-ratelimit-reset-tokens": "6m0s"}
    async with Kernel.from_config(config, plugins=[plugin], entry_points=False) as kernel:
        response = await kernel.achat(model="m/chat", messages=[{"role": "user", "content": "hi"}])
        assert dict(response.headers) == expected
        stream = kernel.astream(model="m/chat", messages=[{"role": "user", "content": "hi"}])
        async for _ in stream:
            pass
        assert stream.response is not None and dict(stream.response.headers) == expected
        embedded = await kernel.aembed(model="m/embed", input=["a"])
        assert dict(embedded.headers) == expected
        try:
            await kernel.achat(model="bad/chat", messages=[{"role": "user", "content": "hi"}])
        except errors.ProviderError as error:
            assert dict(error.headers) == expected
        else:
            raise AssertionError("the failing mock answered")
