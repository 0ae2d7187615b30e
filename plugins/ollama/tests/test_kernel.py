"""The provider driven through a real Kernel: reasoning round trip, structured output
from a stream, OpenAI-style image dicts, the ``ollama`` type by section name."""

from __future__ import annotations

from typing import Any

from ollama_wire import PNG, chunk, final

import llmkernel_ollama.plugin
from llmkernel.kernel import Kernel
from llmkernel.types import ReasoningPart, TextPart
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer


def kernel_for(server: FakeServer, **options: Any) -> Kernel:
    # No "type": a section named "ollama" is of type ollama.
    config = {
        "providers": {"ollama": {"base_url": server.url, **options}},
        "retry": {"attempts": 1, "initial_wait": 0.0, "max_wait": 0.0},
    }
    return Kernel.from_config(config, plugins=[llmkernel_ollama.plugin], entry_points=False)


async def test_streamed_thinking_is_sent_back_next_turn(server: FakeServer) -> None:
    server.expect(
        "POST",
        "/api/chat",
        FakeResponse.ndjson(
            [
                chunk("qwen3", thinking="17 x 23 = "),
                chunk("qwen3", thinking="391."),
                chunk("qwen3", content="391"),
                final("qwen3", prompt=18, output=40),
            ]
        ),
        FakeResponse.json_body(final("qwen3", content="You're welcome.", prompt=60, output=5)),
    )
    async with kernel_for(server) as kernel:
        stream = kernel.astream(model="ollama/qwen3", messages="What is 17 x 23?", reasoning="high")
        events = [e async for e in stream]
        assert [e.type for e in events] == ["reasoning", "reasoning", "text", "usage", "finish"]
        first = stream.response
        assert first is not None
        assert first.message.content == (ReasoningPart(text="17 x 23 = 391."), TextPart(text="391"))
        assert first.usage.input_tokens == 18 and first.usage.output_tokens == 40
        await kernel.achat(
            model="ollama/qwen3",
            messages=[
                {"role": "user", "content": "What is 17 x 23?"},
                first.message,
                {"role": "user", "content": "Thanks"},
            ],
        )
    sent = [r.json() for r in server.requests]
    assert sent[0]["think"] is True and sent[0]["stream"] is True
    assert sent[1]["messages"][1] == {
        "role": "assistant",
        "content": "391",
        "thinking": "17 x 23 = 391.",
    }
    assert "think" not in sent[1]


async def test_streamed_structured_output_is_parsed(server: FakeServer) -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    server.expect(
        "POST",
        "/api/chat",
        FakeResponse.ndjson(
            [
                chunk("llama3.1", content='{"age": '),
                chunk("llama3.1", content="22}"),
                final("llama3.1", prompt=34, output=6),
            ]
        ),
    )
    async with kernel_for(server) as kernel:
        stream = kernel.astream(
            model="ollama/llama3.1",
            messages="Ollama is 22. JSON please.",
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "person", "schema": schema},
            },
        )
        async for _ in stream:
            pass
    assert stream.response is not None and stream.response.parsed == {"age": 22}
    assert server.requests[0].json()["format"] == schema


async def test_openai_style_image_dicts(server: FakeServer) -> None:
    server.expect("POST", "/api/chat", FakeResponse.json_body(final("gemma3", content="A dot.")))
    async with kernel_for(server, keep_alive="1h") as kernel:
        response = await kernel.achat(
            model="ollama/gemma3",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    ],
                }
            ],
        )
    assert response.text == "A dot." and response.provider == "ollama"
    assert server.requests[0].json()["messages"] == [
        {"role": "user", "content": "What is this?", "images": [PNG]}
    ]
    assert server.requests[0].json()["keep_alive"] == "1h"
