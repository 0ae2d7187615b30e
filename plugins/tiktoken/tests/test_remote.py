"""The providers' counting endpoints, opt-in, against fake servers that speak their
formats (Anthropic Messages count_tokens, Gemini countTokens)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from llmkernel import Kernel, hookimpl
from llmkernel.errors import AuthenticationError, ConfigError
from llmkernel.provider import Provider, ProviderConfig
from llmkernel.testing.scripted import ScriptedProvider
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer
from llmkernel_tiktoken import acount_tokens, plugin


class ProviderTypes:
    """Serves the provider types ``anthropic`` and ``gemini`` with scripted answers
    (their real plugins are other packages); counting never calls them."""

    __llmkernel_name__ = "fake-providers"

    @hookimpl
    def provide_chat(self, config: ProviderConfig) -> Provider | None:
        if config.type not in ("anthropic", "gemini"):
            return None
        return ScriptedProvider(ProviderConfig(name=config.name, type=config.type, options={}))


TOOL = {
    "type": "function",
    "function": {"name": "lookup", "description": "Find it", "parameters": {"type": "object"}},
}
MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hello"},
]


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


def kernel_for(server: FakeServer, **settings: Any) -> Kernel:
    config = {
        "providers": {"claude": {"type": "anthropic"}, "g": {"type": "gemini"}},
        "plugin": {
            "tiktoken": {
                "remote": ["anthropic", "gemini"],
                "anthropic_base_url": server.url,
                "gemini_base_url": server.url,
                **settings,
            }
        },
    }
    return Kernel.from_config(config, plugins=[ProviderTypes(), plugin], entry_points=False)


async def test_anthropic_count_tokens(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-secret")
    server.expect("POST", "/v1/messages/count_tokens", FakeResponse.json_body({"input_tokens": 17}))
    kernel = kernel_for(server)
    count = await acount_tokens(kernel, "claude/claude-sonnet-4-5", MESSAGES, tools=[TOOL])
    assert (count.tokens, count.exact) == (17, True)
    sent = server.requests[0]
    assert sent.headers["x-api-key"] == "sk-ant-test-secret"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.json() == {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
        "system": "Be brief.",
        "tools": [{"name": "lookup", "description": "Find it", "input_schema": {"type": "object"}}],
    }


async def test_gemini_count_tokens(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "g-test-secret")
    server.expect(
        "POST",
        "/v1beta/models/gemini-2.5-pro:countTokens",
        FakeResponse.json_body({"totalTokens": 9, "promptTokensDetails": []}),
    )
    kernel = kernel_for(server)
    count = await acount_tokens(kernel, "g/gemini-2.5-pro", MESSAGES)
    assert (count.tokens, count.exact) == (9, True)
    sent = server.requests[0]
    assert sent.headers["x-goog-api-key"] == "g-test-secret"
    assert sent.json() == {
        "generateContentRequest": {
            "model": "models/gemini-2.5-pro",
            "contents": [{"role": "user", "parts": [{"text": "Hello"}]}],
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
        }
    }


async def test_errors_are_normalized_and_keep_the_key_out(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-secret")
    server.expect(
        "POST",
        "/v1/messages/count_tokens",
        FakeResponse.json_body(
            {
                "type": "error",
                "error": {"type": "authentication_error", "message": "invalid x-api-key"},
            },
            status=401,
        ),
    )
    with pytest.raises(AuthenticationError) as info:
        await acount_tokens(kernel_for(server), "claude/claude-sonnet-4-5", MESSAGES)
    assert "sk-ant-test-secret" not in str(info.value) and "invalid x-api-key" in str(info.value)


async def test_a_missing_key_names_the_variable(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"\$ANTHROPIC_API_KEY"):
        await acount_tokens(kernel_for(server), "claude/claude-sonnet-4-5", MESSAGES)
    assert server.requests == []


async def test_without_opt_in_nothing_is_sent(server: FakeServer) -> None:
    kernel = kernel_for(server, remote=[])
    count = await acount_tokens(kernel, "claude/claude-sonnet-4-5", MESSAGES)
    assert not count.exact and server.requests == []
