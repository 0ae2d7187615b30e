"""``x-llmkernel-cache: semantic`` on an answer the semantic cache served, for a
plain and a streamed call; the embeddings come from a fake OpenAI upstream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llmkernel_gateway.keys import new_key
from llmkernel_http.testing.fake_server import FakeResponse

from .conftest import Gateway, Upstream, base_config, key_table

EMBEDDING = {
    "object": "list",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.6, 0.8, 0.0]}],
    "model": "emb",
    "usage": {"prompt_tokens": 7, "total_tokens": 7},
}


@pytest.fixture(scope="module")
def semantic_gateway(
    upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, str]]:
    tmp: Path = tmp_path_factory.mktemp("semantic")
    key = new_key()
    config = (
        base_config(upstream.url)
        + f"""
[plugin.cache]
enabled = true
path = "{tmp / "cache.db"}"
semantic = {{ enabled = true, embedding_model = "up/emb" }}
"""
        + key_table("team", key, tenant="team-tenant")
    )
    server = Gateway(config, tmp)
    yield server, key
    server.stop()


def test_a_semantic_hit_is_marked(
    semantic_gateway: tuple[Gateway, str], upstream: Upstream
) -> None:
    gateway, key = semantic_gateway
    upstream.answer(FakeResponse.json_body(EMBEDDING))  # every text: the same vector
    headers = {"authorization": f"Bearer {key}"}

    def ask(text: str, **extra: object) -> httpx.Response:
        body = {"model": "mock/echo", "messages": [{"role": "user", "content": text}], **extra}
        return httpx.post(
            f"{gateway.url}/v1/chat/completions", json=body, headers=headers, timeout=30
        )

    first = ask("How do I reset my password?")
    exact = ask("How do I reset my password?")
    same = ask("How can I reset my password?")
    streamed = ask("how can i reset my password", stream=True)
    negated = ask("How do I not reset my password?")
    assert first.headers["x-llmkernel-cache"] == "miss"
    assert exact.headers["x-llmkernel-cache"] == "hit"
    assert same.headers["x-llmkernel-cache"] == "semantic"
    echoed = first.json()["choices"][0]["message"]["content"]
    assert same.json()["choices"][0]["message"]["content"] == echoed
    assert streamed.headers["x-llmkernel-cache"] == "semantic"
    assert echoed in streamed.text  # replayed as one text delta
    assert negated.headers["x-llmkernel-cache"] == "miss"  # the negation guard
    assert [r.path for r in upstream.server.requests].count("/v1/embeddings") == 4


def test_semantic_hits_have_their_own_metric(semantic_gateway: tuple[Gateway, str]) -> None:
    gateway, key = semantic_gateway
    text = httpx.get(
        f"{gateway.url}/metrics", headers={"authorization": f"Bearer {key}"}, timeout=30
    ).text
    semantic = [
        line
        for line in text.splitlines()
        if line.startswith("llmkernel_gateway_cache_semantic_hits_total{")
    ]
    assert len(semantic) == 1 and semantic[0].endswith(" 2.0")  # plain and streamed
