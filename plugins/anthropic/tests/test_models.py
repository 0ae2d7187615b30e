"""Models, health, capabilities, settings and the plugin hook."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from anthropic_wire import API_KEY, Route, error_response, make_provider, models_page

import llmkernel_anthropic.plugin
from llmkernel import errors
from llmkernel.kernel import Kernel
from llmkernel.provider import ProviderConfig
from llmkernel.types import Capabilities, EmbeddingRequest
from llmkernel_anthropic.provider import AnthropicProvider
from llmkernel_anthropic.settings import AnthropicSettings
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer


async def test_list_models_follows_pages(route: Route, provider: AnthropicProvider) -> None:
    route.expect(
        "GET",
        "/v1/models",
        models_page(["claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805"], has_more=True),
        models_page(["claude-3-5-haiku-20241022", "claude-future-9"], has_more=False),
    )
    models = await provider.list_models()
    assert [m.id for m in models] == [
        "claude-sonnet-4-5-20250929",
        "claude-opus-4-1-20250805",
        "claude-3-5-haiku-20241022",
        "claude-future-9",
    ]
    assert all(m.provider == "p" for m in models)
    assert models[1].capabilities is not None and models[1].capabilities.max_output_tokens == 32000
    assert models[3].capabilities is None
    first, second = route.requests
    assert first.query == {"limit": ["1000"]}
    assert second.query == {"limit": ["1000"], "after_id": ["claude-opus-4-1-20250805"]}
    assert first.headers["x-api-key"] == API_KEY
    assert first.headers["anthropic-version"] == "2023-06-01"


async def test_list_models_stops_when_the_cursor_does_not_move(
    route: Route, provider: AnthropicProvider
) -> None:
    route.expect("GET", "/v1/models", models_page(["claude-x"], has_more=True))
    models = await provider.list_models()
    assert [m.id for m in models] == ["claude-x"]
    assert len(route.requests) == 2  # the second page repeated the cursor: stop


async def test_list_models_errors(route: Route, provider: AnthropicProvider) -> None:
    route.expect(
        "GET",
        "/v1/models",
        error_response(401, "authentication_error", "invalid x-api-key"),
        FakeResponse.json_body({"models": []}),
    )
    with pytest.raises(errors.AuthenticationError) as info:
        await provider.list_models()
    assert info.value.status == 401 and info.value.provider == "p"
    with pytest.raises(errors.MalformedResponseError, match="'data'"):
        await provider.list_models()


async def test_health(route: Route, provider: AnthropicProvider) -> None:
    route.expect(
        "GET",
        "/v1/models",
        models_page(["claude-sonnet-4-5"]),
        error_response(401, "authentication_error", "invalid x-api-key"),
        FakeResponse.text_body("<html>oops</html>", content_type="text/html"),
    )
    healthy = await provider.health()
    assert healthy.ok and healthy.latency >= 0
    assert route.requests[0].query == {"limit": ["1"]}
    refused = await provider.health()
    assert not refused.ok and "invalid x-api-key" in refused.detail
    garbled = await provider.health()
    assert not garbled.ok and "not JSON" in garbled.detail


async def test_health_without_a_server_or_key(monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeServer()
    url = server.url
    server.close()
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    provider = make_provider(url)
    down = await provider.health()
    await provider.aclose()
    assert not down.ok and "connection failed" in down.detail
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    keyless = make_provider(url)
    result = await keyless.health()
    assert not result.ok and "ANTHROPIC_API_KEY" in result.detail


@pytest.mark.parametrize(
    ("model", "alias"),
    [
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("claude-opus-4-20250514", "claude-opus-4"),
        ("claude-sonnet-4-5", "claude-sonnet-4-5"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
    ],
)
def test_capabilities_by_alias(model: str, alias: str) -> None:
    provider = make_provider("http://127.0.0.1:9")
    caps = provider.capabilities(model)
    assert caps is not None and caps == provider.capabilities(alias)
    assert caps.context_window == 200_000 and caps.tools and caps.images and caps.json_schema
    assert not caps.embeddings


def test_capability_details() -> None:
    provider = make_provider("http://127.0.0.1:9")
    assert provider.capabilities("claude-3-5-haiku") == Capabilities(
        tools=True,
        images=True,
        documents=True,
        json_schema=True,
        reasoning=False,
        embeddings=False,
        context_window=200_000,
        max_output_tokens=8192,
    )
    sonnet = provider.capabilities("claude-sonnet-4-5")
    assert sonnet is not None and sonnet.reasoning and sonnet.max_output_tokens == 64000
    assert provider.capabilities("gpt-4o") is None
    assert provider.capabilities("claude-opus") is None


def test_declared_models() -> None:
    provider = make_provider("http://127.0.0.1:9", models=["my-claude", "claude-opus-4-1"])
    declared = provider.declared_models()
    assert declared[:2] == ["my-claude", "claude-opus-4-1"]
    assert "claude-sonnet-4-5" in declared and "claude-3-5-haiku" in declared
    assert len(declared) == len(set(declared))


async def test_no_embeddings() -> None:
    provider = make_provider("http://127.0.0.1:9")
    with pytest.raises(errors.InvalidRequestError, match="embeddings"):
        await provider.embed(EmbeddingRequest(model="claude-sonnet-4-5", inputs=("x",)))


def test_settings_defaults() -> None:
    settings = AnthropicSettings()
    assert settings.base_url == "https://api.anthropic.com"
    assert settings.api_key_env == "ANTHROPIC_API_KEY"
    assert settings.api_version == "2023-06-01"
    assert settings.beta == []
    assert settings.default_max_tokens == 4096
    assert (
        AnthropicSettings(base_url="https://proxy.example/anthropic/v1/").api_root
        == "https://proxy.example/anthropic"
    )


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"api_verison": "x"}, "did you mean 'api_version'"),
        ({"default_max_tokens": 0}, "default_max_tokens"),
        ({"default_max_tokens": "many"}, "default_max_tokens"),
        ({"beta": "one-beta"}, "beta"),
        ({"base_url": ""}, "base_url"),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], match: str) -> None:
    with pytest.raises(errors.ConfigError, match=match):
        AnthropicProvider(
            ProviderConfig(
                name="p", type="anthropic", options=options, where="[providers.p] in test.toml"
            )
        )


def test_secret_never_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    provider = make_provider("http://127.0.0.1:9")
    provider.client()
    assert API_KEY not in repr(provider)
    assert API_KEY not in repr(provider.settings)


def test_plugin_hook_and_entry_point() -> None:
    config = ProviderConfig(name="claude", type="anthropic")
    made = llmkernel_anthropic.plugin.provide_chat(kernel=None, config=config)
    assert isinstance(made, AnthropicProvider) and made.name == "claude"
    other = ProviderConfig(name="o", type="openai")
    assert llmkernel_anthropic.plugin.provide_chat(kernel=None, config=other) is None
    found = [ep for ep in entry_points(group="llmkernel.plugins") if ep.name == "anthropic"]
    assert [ep.value for ep in found] == ["llmkernel_anthropic.plugin"]


def test_kernel_builds_the_provider() -> None:
    kernel = Kernel.from_config(
        {"providers": {"claude": {"type": "anthropic", "default_max_tokens": 1000}}},
        plugins=[llmkernel_anthropic.plugin],
        entry_points=False,
    )
    provider = kernel.provider("claude")
    assert isinstance(provider, AnthropicProvider)
    assert provider.settings.default_max_tokens == 1000
