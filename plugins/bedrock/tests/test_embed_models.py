"""Embeddings through InvokeModel (Titan and Cohere bodies), model listing through
ListFoundationModels, capabilities as data, and the CLI against the fake."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bedrock_wire import (
    MODEL,
    REQUEST_ID,
    check_sigv4,
    foundation_models,
    json_response,
    metadata,
    path,
    stream_response,
    text_events,
    usage,
)

import llmkernel_bedrock.plugin
from llmkernel import errors
from llmkernel.kernel import Kernel
from llmkernel.types import Usage
from llmkernel_bedrock.models import base_model, capabilities_for
from llmkernel_http.testing.fake_server import FakeServer, RecordedRequest


def make(server: FakeServer, **options: Any) -> Kernel:
    table = {
        "type": "bedrock",
        "base_url": server.url,
        "control_url": server.url,
        "region": "us-east-1",
        **options,
    }
    return Kernel.from_config(
        {"providers": {"aws": table}, "retry": {"attempts": 1}},
        plugins=[llmkernel_bedrock.plugin],
        entry_points=False,
    )


async def test_titan_embeddings_one_text_a_call(server: FakeServer) -> None:
    model = "amazon.titan-embed-text-v2:0"

    def titan(request: RecordedRequest) -> Any:
        body = request.json()
        assert set(body) == {"inputText", "dimensions"} and body["dimensions"] == 256
        n = len(body["inputText"])
        return json_response(
            {
                "embedding": [float(n), 0.5],
                "inputTextTokenCount": n,
                "embeddingsByType": {"float": [float(n), 0.5]},
            }
        )

    server.expect("POST", path(model, "invoke"), titan)
    async with make(server) as kernel:
        result = await kernel.aembed(model=f"aws/{model}", input=["one", "three"], dimensions=256)
    assert result.vectors == [[3.0, 0.5], [5.0, 0.5]]
    assert result.usage == Usage(input_tokens=8)
    assert result.headers["x-amzn-requestid"] == REQUEST_ID
    assert len(server.requests) == 2
    check_sigv4(server.requests[0])


async def test_cohere_embeddings_in_batches_with_the_token_header(server: FakeServer) -> None:
    model = "cohere.embed-english-v3"

    def cohere(request: RecordedRequest) -> Any:
        body = request.json()
        assert body["input_type"] == "search_query"
        return json_response(
            {
                "embeddings": [[float(len(t))] for t in body["texts"]],
                "id": "b6b3e8b4-0f8e-4c3b-9a5e-3f0d8a1f2c4d",
                "response_type": "embeddings_floats",
                "texts": body["texts"],
            },
            **{"x-amzn-bedrock-input-token-count": str(len(body["texts"]) * 2)},
        )

    server.expect("POST", path(model, "invoke"), cohere)
    async with make(server, embedding_input_type="search_query", embedding_batch_size=2) as kernel:
        result = await kernel.aembed(model=f"aws/{model}", input=["a", "bb", "ccc"])
    assert result.vectors == [[1.0], [2.0], [3.0]]
    assert [r.json()["texts"] for r in server.requests] == [["a", "bb"], ["ccc"]]
    assert result.usage.input_tokens == 6


async def test_cohere_embeddings_by_type(server: FakeServer) -> None:
    model = "cohere.embed-v4:0"
    server.expect(
        "POST",
        path(model, "invoke"),
        json_response(
            {"embeddings": {"float": [[0.1, 0.2]]}, "response_type": "embeddings_by_type"}
        ),
    )
    async with make(server) as kernel:
        result = await kernel.aembed(model=f"aws/{model}", input=["x"], embedding_types=["float"])
    assert result.vectors == [[0.1, 0.2]]
    assert server.requests[-1].json()["embedding_types"] == ["float"]


async def test_a_chat_model_cannot_embed(server: FakeServer) -> None:
    async with make(server) as kernel:
        with pytest.raises(errors.InvalidRequestError, match="not an embedding model"):
            await kernel.aembed(model=f"aws/{MODEL}", input=["x"])
    assert server.requests == []


async def test_list_models_is_signed_and_knows_capabilities(server: FakeServer) -> None:
    server.expect(
        "GET",
        "/foundation-models",
        json_response(foundation_models([MODEL, "amazon.nova-pro-v1:0", "meta.llama3-8b"])),
    )
    async with make(server) as kernel:
        models = await kernel.provider("aws").list_models()
    assert [m.id for m in models] == [MODEL, "amazon.nova-pro-v1:0", "meta.llama3-8b"]
    assert models[0].capabilities is not None
    assert models[0].capabilities.context_window == 200_000
    assert models[1].owned_by == "Amazon"
    assert models[2].capabilities is None
    check_sigv4(server.requests[-1])


async def test_health_reports_a_failure(server: FakeServer) -> None:
    server.expect("GET", "/foundation-models", json_response({"message": "denied"}, status=403))
    async with make(server) as kernel:
        health = await kernel.provider("aws").health()
    assert not health.ok and "PermissionDeniedError" in health.detail


@pytest.mark.parametrize(
    ("model", "window"),
    [
        ("anthropic.claude-3-5-haiku-20241022-v1:0", 200_000),
        ("us.anthropic.claude-3-5-haiku-20241022-v1:0", 200_000),
        ("amazon.nova-micro-v1:0", 128_000),
        ("eu.amazon.nova-lite-v1:0", 300_000),
        ("global.anthropic.claude-haiku-5-5", 1_000_000),
    ],
)
def test_capabilities_as_data(model: str, window: int) -> None:
    found = capabilities_for(model)
    assert found is not None and found.context_window == window


def test_unknown_models_are_unknown() -> None:
    assert capabilities_for("anthropic.claude-3-5-haiku-2024") is None
    assert capabilities_for("mistral.mistral-large-2402-v1:0") is None
    assert base_model("arn:aws:bedrock:us-east-1:1:inference-profile/us.amazon.nova-pro-v1:0") == (
        "amazon.nova-pro-v1:0"
    )


def test_the_cli_chats_with_the_fake(server: FakeServer, tmp_path: Path) -> None:
    """``llmkernel chat -m bedrock/<model>`` streams the reply, with only a config
    file pointing the endpoint at the fake and the usual AWS environment."""
    pieces = ["Hello ", "from ", "Bedrock!"]
    frames: list[Any] = [*text_events(pieces), metadata(usage(9, 4))]
    server.expect("POST", path(MODEL, "converse-stream"), stream_response(frames))
    config = tmp_path / "llmkernel.toml"
    config.write_text(
        f'[providers.bedrock]\nbase_url = "{server.url}"\ncontrol_url = "{server.url}"\n'
    )
    cli = Path(sys.executable).parent / "llmkernel"
    result = subprocess.run(
        [str(cli), "--config", str(config), "chat", "Say hello", "-m", f"bedrock/{MODEL}"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello from Bedrock!\n"
    sent = server.requests[-1]
    assert sent.json()["messages"] == [{"role": "user", "content": [{"text": "Say hello"}]}]
    check_sigv4(sent)  # region from AWS_REGION, keys from the environment


def test_the_cli_lists_the_plugin(tmp_path: Path) -> None:
    cli = Path(sys.executable).parent / "llmkernel"
    result = subprocess.run(
        [str(cli), "plugins"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "bedrock" in result.stdout
