"""The semantic layer through the kernel's pipeline, on a small deterministic
embedder (a provider plugin of this test: bag-of-words vectors). The quality
figures come from the real model: test_semantic_quality.py."""

from __future__ import annotations

import asyncio
import hashlib
import math
from pathlib import Path
from typing import Any

import pytest

from llmkernel import Kernel, hookimpl
from llmkernel.provider import Provider, ProviderConfig
from llmkernel.testing.scripted import ScriptedPlugin, scripted
from llmkernel.types import EmbeddingRequest, EmbeddingResponse, TextDelta, Usage
from llmkernel_cache import plugin
from llmkernel_cache.cache import ResponseCache

DIM = 64


def bag_of_words(text: str) -> list[float]:
    """Each word hashed to a dimension: texts with the same words get the same
    vector, close texts a high cosine."""
    vector = [0.0] * DIM
    for word in text.lower().replace("?", " ").replace(".", " ").split():
        vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % DIM] += 1.0
    return vector


class BagProvider(Provider):
    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self.inputs: list[str] = []

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        self.inputs.extend(request.inputs)
        return EmbeddingResponse(
            vectors=[bag_of_words(t) for t in request.inputs],
            usage=Usage(input_tokens=sum(len(t.split()) for t in request.inputs)),
        )


class BagPlugin:
    __llmkernel_name__ = "bag"

    @hookimpl
    def provide_chat(self, config: ProviderConfig) -> Provider | None:
        return BagProvider(config) if config.type == "bag" else None


def semantic_kernel(
    tmp_path: Path | None,
    script: list[Any] | None = None,
    *,
    extra: Any = (),
    top: dict[str, Any] | None = None,
    **semantic: Any,
) -> Kernel:
    table: dict[str, Any] = {
        **(top or {}),
        "enabled": True,
        "path": "" if tmp_path is None else str(tmp_path / "cache.db"),
        "semantic": {
            "enabled": True,
            "embedding_model": "emb/bow",
            "threshold": 0.8,
            "same_words_threshold": 0.8,
            **semantic,
        },
    }
    config = {
        "providers": {"a": {"type": "scripted", "script": script or []}, "emb": {"type": "bag"}},
        "plugin": {"cache": table},
        "retry": {"attempts": 1},
    }
    return Kernel.from_config(
        config, plugins=[ScriptedPlugin(), BagPlugin(), plugin, *extra], entry_points=False
    )


def the_cache(kernel: Kernel) -> ResponseCache:
    cache = kernel.cache
    assert isinstance(cache, ResponseCache)
    return cache


ACME = {"tenant": "acme"}
SYSTEM = {"role": "system", "content": "Be terse."}
CALL = {"id": "c1", "name": "w", "arguments": {}}


@pytest.mark.parametrize("persisted", [False, True])
async def test_a_paraphrase_is_a_semantic_hit(tmp_path: Path, persisted: bool) -> None:
    kernel = semantic_kernel(tmp_path if persisted else None, ["reset it in settings"])
    async with kernel:
        fresh = await kernel.achat("a/m1", "How do I reset my password?", metadata=ACME)
        hit = await kernel.achat("a/m1", "how can I reset my password", metadata=ACME)
        stats = the_cache(kernel).stats()
    assert fresh.cache_kind is None and not fresh.cached
    assert hit.cached and hit.cache_kind == "semantic" and hit.text == "reset it in settings"
    assert hit.similarity is not None and 0.8 <= hit.similarity < 1.0
    assert hit.cost == 0 and hit.attempts == 0
    assert len(scripted(kernel, "a").requests) == 1
    assert stats["semantic"]["hits"] == 1 and stats["semantic"]["misses"] == 1
    assert stats["semantic"]["embeddings"] == 2
    assert stats["misses"] == 2  # both missed the exact layer


async def test_an_exact_repeat_is_an_exact_hit_and_never_embeds(tmp_path: Path) -> None:
    kernel = semantic_kernel(tmp_path, ["answer"])
    async with kernel:
        await kernel.achat("a/m1", "How do I reset my password?", metadata=ACME)
        again = await kernel.achat("a/m1", "How do I reset my password?", metadata=ACME)
    assert again.cache_kind == "exact" and again.similarity is None
    assert kernel.provider("emb").inputs == ["How do I reset my password?"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("category", "stored", "asked"),
    [
        ("negation", "How do I reset my password?", "How do I not reset my password?"),
        ("numbers", "Convert 100 °F to °C", "Convert 100 °C to °F"),
        ("entities", "What is the capital of France?", "What is the capital of Germany?"),
        ("order", "Is a cat bigger than a dog?", "Is a dog bigger than a cat?"),
        ("antonyms", "How do I enable alerts on my phone?", "How do I disable alerts on my phone?"),
        ("dates", "What's the weather tomorrow in London?", "What's the weather today in London?"),
        ("substitution", "tell me a joke about cats", "tell me a joke about dogs"),
    ],
)
async def test_each_guard_rejects_its_look_alike(category: str, stored: str, asked: str) -> None:
    kernel = semantic_kernel(None, ["first", "second"], threshold=0.0, same_words_threshold=0.0)
    async with kernel:
        await kernel.achat("a/m1", stored, metadata=ACME)
        answer = await kernel.achat("a/m1", asked, metadata=ACME)
        stats = the_cache(kernel).stats()["semantic"]
    assert not answer.cached and answer.text == "second"
    assert stats["rejected"] == 1 and stats["rejected_by"] == {category: 1}


async def test_guards_can_be_chosen(tmp_path: Path) -> None:
    kernel = semantic_kernel(None, ["first"], threshold=0.0, guards=["numbers"])
    async with kernel:
        await kernel.achat("a/m1", "How do I reset my password?", metadata=ACME)
        served = await kernel.achat("a/m1", "How do I not reset my password?", metadata=ACME)
    assert served.cache_kind == "semantic"  # negation was not asked for: a wrong hit


async def test_partitions_are_never_crossed() -> None:
    kernel = semantic_kernel(None, [f"answer {i}" for i in range(20)])
    q, p = "How do I reset my password?", "how can I reset my password"
    async with kernel:
        await kernel.achat("a/m1", q, metadata=ACME)
        variants = [
            kernel.achat("a/m1", p, metadata={"tenant": "other"}),  # tenant
            kernel.achat("a/m2", p, metadata=ACME),  # model
            kernel.achat("a/m1", p, metadata=ACME, max_tokens=5),  # a parameter
            kernel.achat("a/m1", p, metadata=ACME, temperature=0),  # another
            kernel.achat("a/m1", p, metadata=ACME, seed=3),  # a provider option
            kernel.achat("a/m1", [SYSTEM, {"role": "user", "content": p}], metadata=ACME),
            kernel.achat("a/m1", p, metadata=ACME, response_format={"type": "json_object"}),
        ]
        answers = [await call for call in variants]
        same = await kernel.achat("a/m1", p, metadata=ACME)
    assert [a.cached for a in answers] == [False] * len(variants)
    assert same.cache_kind == "semantic" and same.text == "answer 0"


async def test_the_embedding_model_and_dimension_are_part_of_the_partition() -> None:
    from llmkernel_cache.settings import CacheSettings, SemanticSettings

    calls: list[str] = []

    async def embed(model: str, text: str, request: Any) -> list[float]:
        calls.append(model)
        vector = bag_of_words(text)
        return vector if model == "e/one" else [*vector, 0.0]

    def settings(model: str) -> CacheSettings:
        semantic = SemanticSettings(enabled=True, embedding_model=model, threshold=0.5)
        return CacheSettings(enabled=True, path="", semantic=semantic)

    kernel = Kernel.from_config({}, entry_points=False)
    request = kernel.build_request("a/m1", "How do I reset my password?", metadata=ACME)
    cache = ResponseCache(settings("e/one"), embed=embed)
    layer = cache.semantic
    assert layer is not None
    one = layer.partition(request, "acme", settings("e/one").semantic, 64)
    two = layer.partition(request, "acme", settings("e/two").semantic, 64)
    wider = layer.partition(request, "acme", settings("e/one").semantic, 65)
    assert len({one, two, wider}) == 3


@pytest.mark.parametrize(
    ("reason", "kwargs"),
    [
        ("tools", {"tools": [{"name": "f", "parameters": {"type": "object"}}]}),
        ("n", {"n": 2}),
        ("temperature", {"temperature": 0.7}),
        ("off", {"cache": {"semantic": False}}),
        ("off", {"cache_semantic": False}),
        ("no_tenant", {"metadata": {}}),
    ],
)
async def test_never_semantic(reason: str, kwargs: dict[str, Any]) -> None:
    # the exact layer caches temperature > 0 here; the semantic one does not
    kernel = semantic_kernel(None, ["one", "two"], top={"temperature_above_zero": True})
    kwargs = {"metadata": ACME, **kwargs}
    async with kernel:
        await kernel.achat("a/m1", "How do I reset my password?", **kwargs)
        second = await kernel.achat("a/m1", "how can I reset my password", **kwargs)
        stats = the_cache(kernel).stats()["semantic"]
    assert second.cache_kind != "semantic"
    assert stats["skipped"] == {reason: 2} and stats["embeddings"] == 0
    assert kernel.provider("emb").inputs == []  # type: ignore[attr-defined]


async def test_never_semantic_for_images_tool_results_long_talks_and_long_prompts() -> None:
    kernel = semantic_kernel(None, [], max_turns=1, max_prompt_tokens=20)
    image = {
        "role": "user",
        "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image", "url": "https://example.com/a.png"},
        ],
    }
    talk = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "how do I reset my password"},
    ]
    tool_result = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "user", "content": "so?"},
    ]
    long = "please " * 30 + "reset my password"
    async with kernel:
        for messages in (
            [image],
            talk,
            tool_result,
            long,
        ):
            await kernel.achat("a/m1", messages, metadata=ACME)
        stats = the_cache(kernel).stats()["semantic"]
    assert stats["skipped"] == {
        "images": 1,
        "long_conversation": 1,
        "tools": 1,
        "long_prompt": 1,
    }


async def test_only_complete_stop_answers_are_found_by_meaning() -> None:
    from llmkernel.types import Message, Response, TextPart
    from llmkernel_cache.settings import CacheSettings, SemanticSettings

    async def embed(model: str, text: str, request: Any) -> list[float]:
        return bag_of_words(text)

    semantic = SemanticSettings(enabled=True, embedding_model="e/x", threshold=0.8)
    settings = CacheSettings(enabled=True, path="", store_truncated=True, semantic=semantic)
    cache = ResponseCache(settings, embed=embed)
    kernel = Kernel.from_config({}, entry_points=False)

    def ask(text: str) -> Any:
        return kernel.build_request("a/m1", text, metadata=ACME)

    def answer(finish: str) -> Response:
        message = Message(role="assistant", content=(TextPart(text=finish),))
        return Response(message=message, finish_reason=finish)  # type: ignore[arg-type]

    for finish, text in (("length", "How do I reset my password?"), ("stop", "What is a cat?")):
        request = ask(text)
        assert await cache.lookup(request) is None
        await cache.store(request, answer(finish))
    exact = await cache.lookup(ask("How do I reset my password?"))
    assert exact is not None and exact.cache_kind == "exact"  # store_truncated keeps it exact
    assert await cache.lookup(ask("how can I reset my password")) is None  # not by meaning
    found = await cache.lookup(ask("what is a cat"))
    assert found is not None and found.cache_kind == "semantic"


async def test_a_stream_served_from_a_semantic_hit_replays_as_a_stream() -> None:
    kernel = semantic_kernel(None, [["Open ", "settings, ", "then reset."]])
    async with kernel:
        first = [
            e async for e in kernel.astream("a/m1", "How do I reset my password?", metadata=ACME)
        ]
        stream = kernel.astream("a/m1", "how can I reset my password", metadata=ACME)
        replayed = [e async for e in stream]
    assert stream.response is not None and stream.response.cache_kind == "semantic"
    text = lambda events: "".join(e.text for e in events if isinstance(e, TextDelta))  # noqa: E731
    assert text(replayed) == text(first) == "Open settings, then reset."
    assert [e.type for e in replayed][-2:] == ["usage", "finish"]
    assert len(scripted(kernel, "a").requests) == 1


async def test_the_verifier_may_refuse() -> None:
    # the verifier is the answering model itself: it says "no" once, then "yes"
    kernel = semantic_kernel(None, ["answer", "no", "second", "yes"], verifier="self")
    async with kernel:
        await kernel.achat("a/m1", "How do I reset my password?", metadata=ACME)
        refused = await kernel.achat("a/m1", "how can I reset my password", metadata=ACME)
        served = await kernel.achat("a/m1", "how can I reset my password please", metadata=ACME)
        stats = the_cache(kernel).stats()["semantic"]
    assert refused.text == "second" and not refused.cached
    assert served.cache_kind == "semantic"
    assert stats["rejected_by"] == {"verifier": 1}
    asked = scripted(kernel, "a").requests
    assert "Request A: How do I reset my password?" in asked[1].messages[0].text


async def test_an_embedding_failure_is_a_miss_never_an_error() -> None:
    kernel = semantic_kernel(None, ["one"], embedding_model="nowhere/x")
    async with kernel:
        answer = await kernel.achat("a/m1", "How do I reset my password?", metadata=ACME)
        stats = the_cache(kernel).stats()["semantic"]
    assert answer.text == "one" and stats["errors"] == 1


async def test_vectors_persist_with_the_entry_and_expire_with_it(tmp_path: Path) -> None:
    first = semantic_kernel(tmp_path, ["kept"])
    async with first:
        await first.achat("a/m1", "How do I reset my password?", metadata=ACME)
    second = semantic_kernel(tmp_path, ["never"])
    async with second:
        hit = await second.achat("a/m1", "how can I reset my password", metadata=ACME)
    assert hit.cache_kind == "semantic" and hit.text == "kept"
    import sqlite3

    row = (
        sqlite3.connect(tmp_path / "cache.db")
        .execute("SELECT length(vector), prompt, partition IS NOT NULL FROM responses")
        .fetchone()
    )
    assert row == (4 * DIM, "How do I reset my password?", 1)
    # an expired entry is never served by meaning either
    third = semantic_kernel(tmp_path, ["fresh"])
    async with third:
        cache = the_cache(third)
        cache.clock = lambda: 10**12
        late = await third.achat("a/m1", "how can I reset my password", metadata=ACME)
    assert late.text == "fresh" and not late.cached


async def test_another_process_answers_are_found(tmp_path: Path) -> None:
    reader = semantic_kernel(tmp_path, ["unused"], top={"key_refresh": 0.0})
    writer = semantic_kernel(tmp_path, ["from the writer"])
    async with reader, writer:
        assert not (await reader.achat("a/m1", "what is the capital of peru", metadata=ACME)).cached
        await writer.achat("a/m1", "How do I reset my password?", metadata=ACME)
        await the_cache(writer).aflush()
        hit = await reader.achat("a/m1", "how can I reset my password", metadata=ACME)
    assert hit.cache_kind == "semantic" and hit.text == "from the writer"


async def test_the_ledger_records_the_embedding_call_and_the_hit(tmp_path: Path) -> None:
    import llmkernel_ledger.plugin
    from llmkernel_ledger.store import LedgerStore

    ledger = tmp_path / "ledger.db"
    config_extra = {"path": str(ledger)}
    kernel = Kernel.from_config(
        {
            "providers": {"a": {"type": "scripted", "script": ["answer"]}, "emb": {"type": "bag"}},
            "plugin": {
                "cache": {
                    "enabled": True,
                    "path": "",
                    "semantic": {
                        "enabled": True,
                        "embedding_model": "emb/bow",
                        "threshold": 0.8,
                        "same_words_threshold": 0.8,
                    },
                },
                "ledger": config_extra,
            },
            "prices": {"emb/bow": {"input": 0.02, "output": 0}},
        },
        plugins=[ScriptedPlugin(), BagPlugin(), plugin, llmkernel_ledger.plugin],
        entry_points=False,
    )
    async with kernel:
        await kernel.achat("a/m1", "How do I reset my password?", metadata=ACME)
        hit = await kernel.achat("a/m1", "how can I reset my password", metadata=ACME)
    assert hit.cache_kind == "semantic"
    store = LedgerStore(str(ledger))
    rows = list(store.rows())
    store.close()
    kinds = sorted((r["kind"], r["provider"] or "", bool(r["cached"]), r["tenant"]) for r in rows)
    assert kinds == [
        ("chat", "", True, "acme"),  # the semantic hit: no provider, nothing spent
        ("chat", "a", False, "acme"),  # the answer
        ("embed", "emb", False, "acme"),  # each lookup's embedding, billed to the tenant
        ("embed", "emb", False, "acme"),
    ]
    embeds = [r for r in rows if r["kind"] == "embed"]
    assert all(r["input_tokens"] > 0 and r["cost"] and float(r["cost"]) > 0 for r in embeds)
    assert [float(r["cost"]) for r in rows if r["cached"]] == [0.0]


async def test_200_concurrent_lookups_and_stores(tmp_path: Path) -> None:
    topics = [f"topic{i}" for i in range(40)]
    kernel = semantic_kernel(tmp_path, [f"answer {i}" for i in range(400)])
    async with kernel:
        stored = await asyncio.gather(
            *(kernel.achat("a/m1", f"tell me about {t} please", metadata=ACME) for t in topics),
            *(
                kernel.achat("a/m1", f"explain {t} and {t}2 now", metadata={"tenant": "b"})
                for t in topics
            ),
        )
        assert not any(a.cached for a in stored)
        asked = [
            kernel.achat("a/m1", f"please tell me about {topics[i % 40]}", metadata=ACME)
            for i in range(100)
        ] + [
            kernel.achat("a/m1", f"brand new question number {i} here", metadata=ACME)
            for i in range(100)
        ]
        answers = await asyncio.gather(*asked)
        stats = the_cache(kernel).stats()["semantic"]
    texts = {a.text for a in stored[:40]}
    hits = [a for a in answers[:100] if a.cache_kind == "semantic"]
    # every paraphrase found its own topic's answer (never another topic's, or tenant b's)
    by_topic = {
        f"tell me about {t} please": a.text for t, a in zip(topics, stored[:40], strict=True)
    }
    for i, answer in enumerate(answers[:100]):
        if answer.cache_kind == "semantic":
            assert answer.text == by_topic[f"tell me about {topics[i % 40]} please"]
    assert len(hits) >= 60  # concurrent asks of one topic may all miss before a store
    assert all(a.text not in texts for a in answers[100:])
    assert stats["hits"] == len(hits)
    assert stats["hits"] + stats["misses"] + stats["rejected"] == 280


def test_settings_errors_name_the_key() -> None:
    from llmkernel import ConfigError

    with pytest.raises(ConfigError, match="embedding_model"):
        semantic_kernel(None, embedding_model="")
    with pytest.raises(ConfigError, match="unknown guard 'negations'"):
        semantic_kernel(None, guards=["negations"])
    with pytest.raises(ConfigError, match="threshold"):
        semantic_kernel(None, threshold=1.5)
    with pytest.raises(ConfigError, match="verifier"):
        semantic_kernel(None, verifier="gpt-4o")


def test_per_model_overrides() -> None:
    from llmkernel_cache.settings import (
        CacheSettings,
        ModelCacheSettings,
        ModelSemanticSettings,
        SemanticSettings,
    )

    settings = CacheSettings(
        enabled=True,
        semantic=SemanticSettings(enabled=True, embedding_model="e/x"),
        models={
            "a/m2": ModelCacheSettings(semantic=ModelSemanticSettings(enabled=False)),
            "a/m3": ModelCacheSettings(semantic=ModelSemanticSettings(threshold=0.99)),
        },
    )
    assert settings.semantic_for("a/m1").threshold == 0.96
    assert not settings.semantic_for("a/m2").enabled
    assert settings.semantic_for("a/m3").threshold == 0.99
    assert math.isclose(settings.semantic_for("a/m3").same_words_threshold, 0.90)


def test_cli_stats_show_every_process_hits_misses_and_rejections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from llmkernel_cli.shell import main

    for _ in range(2):  # two runs, as two processes would: the counts add up in the file
        kernel = semantic_kernel(tmp_path, ["one", "two", "three"])
        with kernel:
            kernel.chat("a/m1", "How do I reset my password?", metadata=ACME)
            kernel.chat("a/m1", "How do I reset my password?", metadata=ACME)  # exact
            kernel.chat("a/m1", "how can I reset my password", metadata=ACME)  # semantic
            kernel.chat("a/m1", "How do I not reset my password?", metadata=ACME)  # negation
    config = tmp_path / "llmkernel.toml"
    config.write_text(f'[plugin.cache]\nenabled = true\npath = "{tmp_path / "cache.db"}"\n')
    assert main(["-c", str(config), "cache", "stats", "--json"]) == 0
    lookups = json.loads(capsys.readouterr().out)["lookups"]
    # run 1: exact miss, exact hit, semantic hit, rejected (then stored); run 2: three
    # exact hits and the paraphrase again (a semantic hit is not stored under its key)
    assert lookups["exact"]["hits"] == 1 + 3 and lookups["exact"]["misses"] == 3 + 1
    assert lookups["exact"]["memory_hits"] == 2
    assert lookups["semantic"]["hits"] == 2 and lookups["semantic"]["rejected"] == 1
    assert lookups["semantic"]["misses"] == 1
    assert lookups["semantic"]["rejected_by"] == {"negation": 1}
    assert main(["-c", str(config), "cache", "stats"]) == 0
    text = capsys.readouterr().out
    assert "exact: 4 hits (2 from memory), 4 misses" in text
    assert "semantic: 2 hits, 1 misses, 1 rejected" in text
    assert "rejected by: negation 1" in text


def test_cache_files_are_private(tmp_path: Path) -> None:
    import stat

    kernel = semantic_kernel(tmp_path / "dir", ["one"])
    with kernel:
        kernel.chat("a/m1", "How do I reset my password?", metadata=ACME)
        the_cache(kernel).flush()
        made = sorted((tmp_path / "dir").iterdir())
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in made}
    assert {"cache.db", "cache.db-wal", "cache.db-shm"} <= set(modes)
    assert set(modes.values()) == {0o600}
    assert stat.S_IMODE((tmp_path / "dir").stat().st_mode) == 0o700
