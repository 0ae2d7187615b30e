"""A gateway for the Responses and Messages API tests, and fake upstreams speaking
OpenAI's (Chat Completions and Responses), Anthropic's and Gemini's wire formats,
written from their API references (read 2026-12-07)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from llmkernel_gateway.keys import new_key
from llmkernel_http.testing.fake_server import FakeResponse

from .conftest import UPSTREAM_KEY_ENV, Gateway, Upstream, key_table

CLAUDE = "claude-sonnet-4-5-20250929"
GEMINI = "gemini-2.5-flash"


class Upstreams:
    """One fake server per wire format."""

    def __init__(self) -> None:
        self.openai = Upstream()  # Chat Completions
        self.native = Upstream()  # OpenAI's Responses API
        self.claude = Upstream()
        self.gemini = Upstream()

    def close(self) -> None:
        for each in (self.openai, self.native, self.claude, self.gemini):
            each.close()


def config(up: Upstreams, keys: dict[str, str], data: Path) -> str:
    return f"""
[retry]
attempts = 1

[routing]
strategy = "round-robin"

[providers.mock]
type = "mock"

[providers.mock2]
type = "mock"

[providers.slow]
type = "mock"
tokens_per_second = 2.0

[providers.oa]
type = "openai"
base_url = "{up.openai.url}/v1"
api_key_env = "{UPSTREAM_KEY_ENV}"
models = ["gpt-4o-mini"]

[providers.native]
type = "openai"
wire_api = "responses"
base_url = "{up.native.url}/v1"
api_key_env = "{UPSTREAM_KEY_ENV}"
models = ["gpt-5"]

[providers.claude]
type = "anthropic"
base_url = "{up.claude.url}"
api_key_env = "{UPSTREAM_KEY_ENV}"
beta = ["prompt-caching-2024-07-31"]

[providers.gem]
type = "gemini"
base_url = "{up.gemini.url}"
api_key_env = "{UPSTREAM_KEY_ENV}"

[models]
pair = ["mock/echo", "mock2/echo"]

[plugin.gateway]
request_timeout = 10.0
responses_path = "{data / "responses.db"}"
ping_interval = 0.2
""" + "".join(
        key_table(name, secret, tenant=f"tenant-{name}", **extra)
        for name, secret, extra in (
            ("alice", keys["alice"], {}),
            ("bob", keys["bob"], {}),
            ("mock-only", keys["mock-only"], {"models": ["mock/*"]}),
        )
    )


@pytest.fixture(scope="session")
def upstreams() -> Iterator[Upstreams]:
    found = Upstreams()
    yield found
    found.close()


@pytest.fixture(scope="session")
def api_keys() -> dict[str, str]:
    return {"alice": new_key(), "bob": new_key(), "mock-only": new_key()}


@pytest.fixture(scope="session")
def apis(
    upstreams: Upstreams, api_keys: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("apis")
    server = Gateway(config(upstreams, api_keys, tmp), tmp)
    yield server
    server.stop()


def oai(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=30)


def claude(gateway: Gateway, key: str, **headers: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=gateway.url, api_key=key, max_retries=0, timeout=30, default_headers=headers
    )


def events_of(body: str) -> list[tuple[str, dict[str, Any]]]:
    """``(event name, data)`` of each SSE event in ``body``."""
    found = []
    for block in body.split("\n\n"):
        if not block.strip():
            continue
        name, data = "", ""
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data += line.removeprefix("data: ")
        found.append((name, json.loads(data)))
    return found


def stream_raw(gateway: Gateway, path: str, key: str, body: dict[str, Any]) -> httpx.Response:
    """A streamed POST read whole (status, headers, the raw SSE text)."""
    with httpx.stream(
        "POST", f"{gateway.url}{path}", headers={"x-api-key": key}, json=body, timeout=30
    ) as response:
        response.read()
    return response


# ----------------------------------------------------------------------------- wires


def chat_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-up",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def chat_sse(*chunks: dict[str, Any], done: bool = True) -> list[str]:
    return [f"data: {json.dumps(c)}\n\n" for c in chunks] + (["data: [DONE]\n\n"] if done else [])


def chat_answer(text: str, **usage: int) -> FakeResponse:
    return FakeResponse.json_body(
        {
            "id": "chatcmpl-up",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": usage.get("prompt", 9),
                "completion_tokens": usage.get("completion", 3),
            },
        }
    )


def claude_answer(
    content: list[dict[str, Any]], *, stop: str = "end_turn", usage: dict[str, int] | None = None
) -> FakeResponse:
    return FakeResponse.json_body(
        {
            "id": "msg_up",
            "type": "message",
            "role": "assistant",
            "model": CLAUDE,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage or {"input_tokens": 12, "output_tokens": 4},
        },
        headers={"request-id": "req_up"},
    )


def claude_event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"


def claude_text_start() -> list[str]:
    """A stream's ``message_start`` and the start of its first (text) block."""
    message = {
        "id": "msg_up",
        "type": "message",
        "role": "assistant",
        "model": CLAUDE,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }
    return [
        claude_event("message_start", {"message": message}),
        claude_event(
            "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
        ),
    ]


def gemini_answer(text: str) -> FakeResponse:
    return FakeResponse.json_body(
        {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": text}]},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 20,
                "candidatesTokenCount": 5,
                "totalTokenCount": 25,
            },
            "modelVersion": GEMINI,
        }
    )
