"""Embeddings, model listing, health, capabilities and configuration."""

from __future__ import annotations

from typing import Any

import pytest
from ollama_wire import tags

from llmkernel import errors
from llmkernel.provider import ProviderConfig
from llmkernel.types import Capabilities, EmbeddingRequest, Usage
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer, RecordedRequest
from llmkernel_ollama import plugin
from llmkernel_ollama.models import KNOWN_MODELS, base_name
from llmkernel_ollama.provider import OllamaProvider
from llmkernel_ollama.settings import OllamaSettings

EMBEDDER = "nomic-embed-text"


def make(server: FakeServer | None = None, **options: Any) -> OllamaProvider:
    base = {"base_url": server.url} if server is not None else {}
    return OllamaProvider(
        ProviderConfig(
            name="local",
            type="ollama",
            options={**base, **options},
            where="[providers.local] in llmkernel.toml",
        )
    )


def embed_answer(request: RecordedRequest) -> FakeResponse:
    body = request.json()
    vectors = [[float(len(text)), 0.5, -1.0] for text in body["input"]]
    return FakeResponse.json_body(
        {
            "model": body["model"],
            "embeddings": vectors,
            "total_duration": 14143917,
            "load_duration": 1019500,
            "prompt_eval_count": 4 * len(body["input"]),
        }
    )


# ------------------------------------------------------------------ embeddings


async def test_embeddings_are_batched_in_order_with_summed_usage(server: FakeServer) -> None:
    server.expect("POST", "/api/embed", embed_answer)
    provider = make(server, embedding_batch_size=2, keep_alive=-1, truncate=False)
    result = await provider.embed(
        EmbeddingRequest(
            model=EMBEDDER,
            inputs=("a", "bb", "ccc", "dddd", "eeeee"),
            dimensions=256,
            options={"num_thread": 4},
        )
    )
    await provider.aclose()
    assert [v[0] for v in result.vectors] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert result.usage == Usage(input_tokens=20)
    assert result.model == EMBEDDER
    sent = [r.json() for r in server.requests_to("/api/embed")]
    assert [b["input"] for b in sent] == [["a", "bb"], ["ccc", "dddd"], ["eeeee"]]
    assert sent[0] == {
        "model": EMBEDDER,
        "input": ["a", "bb"],
        "dimensions": 256,
        "truncate": False,
        "keep_alive": -1,
        "options": {"num_thread": 4},
    }


async def test_embed_count_mismatch_is_malformed(server: FakeServer) -> None:
    server.expect(
        "POST",
        "/api/embed",
        FakeResponse.json_body({"model": EMBEDDER, "embeddings": [[0.1, 0.2]]}),
    )
    provider = make(server)
    with pytest.raises(errors.MalformedResponseError, match="1 embeddings for 2 inputs"):
        await provider.embed(EmbeddingRequest(model=EMBEDDER, inputs=("a", "b")))
    await provider.aclose()


@pytest.mark.parametrize("embeddings", [None, [["x", 1]], [[True]], "nope"])
async def test_embed_bad_vectors_are_malformed(server: FakeServer, embeddings: Any) -> None:
    server.expect(
        "POST", "/api/embed", FakeResponse.json_body({"model": EMBEDDER, "embeddings": embeddings})
    )
    provider = make(server)
    with pytest.raises(errors.MalformedResponseError):
        await provider.embed(EmbeddingRequest(model=EMBEDDER, inputs=("a",)))
    await provider.aclose()


async def test_embed_context_overflow(server: FakeServer) -> None:
    server.expect(
        "POST",
        "/api/embed",
        FakeResponse.json_body(
            {"error": "the input length exceeds the context length"}, status=400
        ),
    )
    provider = make(server, truncate=False)
    with pytest.raises(errors.ContextWindowExceededError) as info:
        await provider.embed(EmbeddingRequest(model=EMBEDDER, inputs=("long " * 9000,)))
    await provider.aclose()
    assert info.value.status == 400 and info.value.model == EMBEDDER


# ------------------------------------------------------------------ models and health


async def test_list_models_from_tags(server: FakeServer) -> None:
    server.expect(
        "GET",
        "/api/tags",
        FakeResponse.json_body(tags(["llama3.2:latest", "qwen3:8b", "my-finetune:q4"])),
    )
    provider = make(server)
    models = await provider.list_models()
    await provider.aclose()
    assert [m.id for m in models] == ["llama3.2:latest", "qwen3:8b", "my-finetune:q4"]
    assert all(m.provider == "local" for m in models)
    assert models[0].capabilities == KNOWN_MODELS["llama3.2"]
    assert models[1].capabilities is not None and models[1].capabilities.reasoning
    assert models[2].capabilities is None
    assert server.requests[0].method == "GET"


async def test_list_models_with_a_bad_body(server: FakeServer) -> None:
    server.expect("GET", "/api/tags", FakeResponse.json_body({"models": "none"}))
    provider = make(server)
    with pytest.raises(errors.MalformedResponseError, match="models"):
        await provider.list_models()
    await provider.aclose()


async def test_health_ok(server: FakeServer) -> None:
    server.expect("GET", "/api/tags", FakeResponse.json_body(tags(["llama3.2:latest"])))
    provider = make(server)
    health = await provider.health()
    await provider.aclose()
    assert health.ok and "1 models" in health.detail and health.latency >= 0


async def test_health_reports_a_bad_key_without_raising(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", "wrong-key-SECRET")
    server.expect("GET", "/api/tags", FakeResponse.json_body({"error": "unauthorized"}, status=401))
    provider = make(server, api_key_env="OLLAMA_API_KEY")
    health = await provider.health()
    await provider.aclose()
    assert not health.ok and "unauthorized" in health.detail
    assert "wrong-key-SECRET" not in health.detail
    assert server.requests[0].headers["authorization"] == "Bearer wrong-key-SECRET"


async def test_health_when_ollama_is_not_running() -> None:
    server = FakeServer()
    url = server.url
    server.close()
    provider = make(base_url=url)
    health = await provider.health()
    await provider.aclose()
    assert not health.ok and "not reachable" in health.detail


# ------------------------------------------------------------------ capabilities


@pytest.mark.parametrize(
    ("model", "base"),
    [
        ("llama3.2", "llama3.2"),
        ("qwen3:30b-a3b", "qwen3"),
        ("library/gpt-oss:20b", "gpt-oss"),
        ("GEMMA3:4B", "gemma3"),
        ("registry.ollama.ai/library/mistral:7b", "mistral"),
    ],
)
def test_capabilities_by_base_name(model: str, base: str) -> None:
    assert base_name(model) == base
    assert make().capabilities(model) == KNOWN_MODELS[base]


def test_capabilities_table_facts() -> None:
    provider = make()
    gpt_oss = provider.capabilities("gpt-oss:20b")
    assert gpt_oss is not None and gpt_oss.reasoning and gpt_oss.tools
    assert gpt_oss.context_window == 131_072
    gemma = provider.capabilities("gemma3")
    assert gemma is not None and gemma.images and not gemma.tools and gemma.json_schema
    embedder = provider.capabilities("nomic-embed-text:latest")
    assert embedder is not None and embedder.embeddings and not embedder.tools
    assert provider.capabilities("qwen3-coder:30b") is None  # not qwen3
    assert provider.capabilities("hf.co/someone/model-GGUF:Q4_K_M") is None


async def test_fetch_capabilities_from_show(server: FakeServer) -> None:
    def answer(request: RecordedRequest) -> FakeResponse:
        assert request.json() == {"model": "my-vision:latest"}
        return FakeResponse.json_body(
            {
                "modelfile": "# omitted",
                "parameters": "",
                "template": "{{ .Prompt }}",
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": "gemma3",
                    "families": ["gemma3"],
                    "parameter_size": "4.3B",
                    "quantization_level": "Q4_K_M",
                },
                "model_info": {
                    "general.architecture": "gemma3",
                    "gemma3.context_length": 131072,
                    "gemma3.embedding_length": 2560,
                },
                "capabilities": ["completion", "vision", "tools"],
                "modified_at": "2025-03-31T16:07:27.293556892-07:00",
            }
        )

    server.expect("POST", "/api/show", answer)
    provider = make(server)
    assert provider.capabilities("my-vision:latest") is None
    found = await provider.fetch_capabilities("my-vision:latest")
    await provider.aclose()
    assert found == Capabilities(
        tools=True,
        images=True,
        json_schema=True,
        reasoning=False,
        embeddings=False,
        context_window=131072,
    )
    assert provider.capabilities("my-vision:latest") == found


async def test_fetch_capabilities_of_a_missing_model(server: FakeServer) -> None:
    server.expect(
        "POST", "/api/show", FakeResponse.json_body({"error": "model 'nope' not found"}, status=404)
    )
    provider = make(server)
    with pytest.raises(errors.ModelNotFoundError):
        await provider.fetch_capabilities("nope")
    await provider.aclose()


def test_declared_models_put_configured_ones_first() -> None:
    provider = make(models=["my-finetune:q4", "qwen3"])
    declared = provider.declared_models()
    assert declared[:2] == ["my-finetune:q4", "qwen3"]
    assert "llama3.2" in declared and "nomic-embed-text" in declared
    assert declared.count("qwen3") == 1


# ------------------------------------------------------------------ configuration


def test_defaults() -> None:
    settings = OllamaSettings()
    assert settings.base_url == "http://localhost:11434"
    assert settings.api_key_env is None
    assert settings.embedding_batch_size == 256
    assert settings.num_ctx is None and settings.keep_alive is None
    assert make().base_url() == "http://localhost:11434"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"num_ctxx": 4096}, "did you mean 'num_ctx'"),
        ({"embedding_batch_size": 0}, "embedding_batch_size"),
        ({"num_ctx": "big"}, "num_ctx"),
        ({"keep_alive": [1]}, "keep_alive"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], match: str) -> None:
    with pytest.raises(errors.ConfigError, match=match) as info:
        make(**options)
    assert "llmkernel.toml" in str(info.value)


def test_plugin_serves_only_its_type() -> None:
    config = ProviderConfig(name="x", type="openai", options={})
    assert plugin.provide_chat(kernel=None, config=config) is None
    made = plugin.provide_chat(
        kernel=None, config=ProviderConfig(name="x", type="ollama", options={})
    )
    assert isinstance(made, OllamaProvider) and made.name == "x" and made.type == "ollama"


def test_readme_config_block_is_valid() -> None:
    import tomllib
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    # The commented keys are documented too: uncomment them.
    uncommented = "\n".join(
        line[2:] if line.startswith("# ") and "=" in line.split("#")[1] else line
        for line in block.splitlines()
    )
    table = tomllib.loads(uncommented)["providers"]["ollama"]
    table.pop("type")
    provider = make(**table)
    assert provider.settings.num_ctx == 8192
    assert provider.settings.model_options == {"top_k": 20, "num_gpu": 99}
    assert provider.settings.api_key_env == "OLLAMA_API_KEY"
