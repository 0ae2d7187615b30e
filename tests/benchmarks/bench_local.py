"""Work the kernel does without a network: cache hits (memory, SQLite), token counting
against raw tiktoken, ledger write throughput and the cost of a budget reservation.

    python tests/benchmarks/bench_local.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from common import MODEL, interleave_async, interleave_sync, median, paired, pct, upstream

from llmkernel import Kernel

SHORT_CHAT = [
    {"role": "system", "content": "You are a concise assistant. Answer in one sentence."},
    {"role": "user", "content": "What is the capital of France, and why is it famous?"},
    {"role": "assistant", "content": "Paris; it is famous for art, food and the Eiffel Tower."},
    {"role": "user", "content": "Name three museums there."},
]
# cl100k's split pattern (tiktoken_ext.openai_public), for the benchmark's own encoding
PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)


def small_encoding(name: str = "o200k_base") -> Any:
    """A real ``tiktoken.Encoding`` with a small vocabulary (bytes plus 400 merges
    learnt from a sample text): the real rank files cannot be downloaded here, and the
    counting cost per token is the same Rust BPE either way."""
    import tiktoken

    sample = (
        " ".join(m["content"] for m in SHORT_CHAT) * 4
        + (
            " the quick brown fox jumps over the lazy dog while the assistant answers"
            " questions about museums, cities, tokens and languages of the world"
        )
        * 8
    )
    ranks: dict[bytes, int] = {bytes([i]): i for i in range(256)}
    words = [[bytes([b]) for b in w.encode()] for w in sample.split(" ")]
    while len(ranks) < 256 + 400:
        pairs: collections.Counter[tuple[bytes, bytes]] = collections.Counter()
        for word in words:
            pairs.update(itertools.pairwise(word))
        if not pairs:
            break
        (a, b), _ = pairs.most_common(1)[0]
        ranks[a + b] = len(ranks)
        for word in words:
            i = 0
            while i < len(word) - 1:
                if word[i] == a and word[i + 1] == b:
                    word[i : i + 2] = [a + b]
                i += 1
    return tiktoken.Encoding(
        name=name,
        pat_str=PATTERN,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": len(ranks)},
    )


def tokens(rounds: int) -> dict[str, Any]:
    import llmkernel_openai.plugin
    import llmkernel_tiktoken.plugin

    encoding = small_encoding()
    kernel = Kernel.from_config(
        {"providers": {"bench": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}}},
        plugins=[llmkernel_openai.plugin, llmkernel_tiktoken.plugin],
        entry_points=False,
    )
    llmkernel_tiktoken.plugin.counter_of(kernel).encodings.register(encoding, "o200k_base")
    count = kernel.count_tokens(f"bench/{MODEL}", SHORT_CHAT)
    assert count.exact, count  # the benchmark's encoding was used, not the estimate

    def raw() -> int:
        # OpenAI's cookbook: 3 tokens a message, its texts, 3 priming the reply
        return (
            sum(
                3 + len(encoding.encode(m["role"])) + len(encoding.encode(m["content"]))
                for m in SHORT_CHAT
            )
            + 3
        )

    def through_kernel() -> int:
        return kernel.count_tokens(f"bench/{MODEL}", SHORT_CHAT).tokens

    assert raw() == through_kernel(), (raw(), through_kernel())
    times = interleave_sync(
        {"raw tiktoken": raw, "kernel.count_tokens": through_kernel}, rounds, warmup=200
    )
    kernel.close()
    r, k = median(times["raw tiktoken"]), median(times["kernel.count_tokens"])
    return {"raw_us": r * 1e6, "kernel_us": k * 1e6, "ratio": k / r, "tokens": count.tokens}


BURST = 10  # cache hits timed together per sample


async def cache_hits(base: str, rounds: int, tmp: Path) -> dict[str, Any]:
    import llmkernel_cache.plugin
    import llmkernel_openai.plugin

    def kernel(cache: dict[str, Any]) -> Kernel:
        return Kernel.from_config(
            {
                "providers": {
                    "bench": {"type": "openai", "base_url": base, "api_key_env": "BENCH_KEY"}
                },
                "plugin": {"cache": {"enabled": True, **cache}},
            },
            plugins=[llmkernel_openai.plugin, llmkernel_cache.plugin],
            entry_points=False,
        )

    memory = kernel({"path": ""})
    # no in-process LRU in front: every hit is read from the SQLite file
    sqlite = kernel({"path": str(tmp / "cache.db"), "memory_entries": 0, "memory_bytes": 0})
    messages = [{"role": "user", "content": "Say hello."}]
    model = f"bench/{MODEL}"
    client = httpx.AsyncClient(base_url=base, headers={"authorization": "Bearer sk-bench"})
    for k in (memory, sqlite):
        await k.achat(model=model, messages=messages)
        again = await k.achat(model=model, messages=messages)
        assert again.cached, "the cache did not hit"

    async def bare() -> object:
        response = await client.post(
            "/chat/completions", json={"model": MODEL, "messages": messages}
        )
        return response.json()

    async def hit(k: Kernel) -> object:
        # a burst of BURST hits per sample (the time per hit is its mean): a single hit
        # of ~30 us timed right after a bare call's 2 ms wait for the network measures
        # the thread waking up (160 us here) more than the cache; see performance.md
        for _ in range(BURST):
            text = (await k.achat(model=model, messages=messages)).text
        return text

    times = await interleave_async(
        {
            "bare httpx call": bare,
            "memory hit": lambda: hit(memory),
            "SQLite hit": lambda: hit(sqlite),
        },
        rounds,
        warmup=100,
    )
    stats = sqlite.stats()["cache"]
    await client.aclose()
    await memory.aclose()
    await sqlite.aclose()
    b = median(times["bare httpx call"])
    for name in ("memory hit", "SQLite hit"):
        times[name] = [t / BURST for t in times[name]]
    return {
        "bare_call_us": b * 1e6,
        "hits_per_sample": BURST,
        "memory_us": median(times["memory hit"]) * 1e6,
        "memory_p99_us": pct(times["memory hit"], 0.99) * 1e6,
        "sqlite_us": median(times["SQLite hit"]) * 1e6,
        "sqlite_p99_us": pct(times["SQLite hit"], 0.99) * 1e6,
        "memory_ratio": median(times["memory hit"]) / b,
        "sqlite_ratio": median(times["SQLite hit"]) / b,
        "sqlite_memory_hits": stats.get("memory_hits"),
    }


async def ledger(calls: int, tmp: Path) -> dict[str, Any]:
    """Mock-provider calls without a ledger, with the durable ledger, and with the
    ledger plus a budget (one reservation a call): calls/s including the final flush,
    and the paired per-call cost of the reservation."""
    import llmkernel_budgets.plugin
    import llmkernel_ledger.plugin
    import llmkernel_mock.plugin
    import llmkernel_prices.plugin

    def kernel(name: str, budget: bool) -> Kernel:
        plugin: dict[str, Any] = {"ledger": {"path": str(tmp / f"{name}.db")}}
        plugins: list[Any] = [llmkernel_mock.plugin, llmkernel_prices.plugin]
        if name != "none":
            plugins.append(llmkernel_ledger.plugin)
        if budget:
            plugin["budgets"] = {"limits": [{"name": "m", "amount": "1000000", "period": "month"}]}
            plugins.append(llmkernel_budgets.plugin)
        return Kernel.from_config(
            {
                "providers": {"m": {"type": "mock"}},
                "prices": {"mock/echo": {"input": "1", "output": "2"}},
                "plugin": plugin,
            },
            plugins=plugins,
            entry_points=False,
        )

    messages = [{"role": "user", "content": "hello"}]
    out: dict[str, Any] = {}
    # throughput: calls as fast as one caller can make them, flushed at close
    rates: dict[str, list[float]] = {"no ledger": [], "ledger": [], "ledger + budget": []}
    for rep in range(3):
        for label, name, budget in (
            ("no ledger", "none", False),
            ("ledger", f"l{rep}", False),
            ("ledger + budget", f"b{rep}", True),
        ):
            k = kernel(name, budget)
            await k.achat(model="m/echo", messages=messages)
            started = time.perf_counter()
            for _ in range(calls):
                await k.achat(model="m/echo", messages=messages)
            await k.aclose()  # the ledger's queue is flushed here
            rates[label].append(calls / (time.perf_counter() - started))
    out["calls_per_s"] = {label: median(v) for label, v in rates.items()}
    plain, with_budget = kernel("p", False), kernel("r", True)

    async def call(k: Kernel) -> object:
        return await k.achat(model="m/echo", messages=messages)

    times = await interleave_async(
        {"ledger": lambda: call(plain), "ledger + budget": lambda: call(with_budget)},
        calls,
        warmup=100,
    )
    await plain.aclose()
    await with_budget.aclose()
    import sqlite3

    db = sqlite3.connect(tmp / "r.db")
    out["budget_rows"] = db.execute("select count(*) from requests").fetchone()[0]
    db.close()
    diff = paired(times["ledger + budget"], times["ledger"])
    out["call_ledger_us"] = median(times["ledger"]) * 1e6
    out["reservation_us"] = median(diff) * 1e6
    out["reservation_p99_us"] = pct(diff, 0.99) * 1e6
    return out


def run(quick: bool) -> dict[str, Any]:
    rounds = 500 if quick else 3000
    out: dict[str, Any] = {"tokens": tokens(rounds)}
    with upstream() as base, tempfile.TemporaryDirectory(prefix="llmkernel-bench-") as tmp:
        out["cache"] = asyncio.run(cache_hits(base, rounds // 2, Path(tmp)))
        out["ledger"] = asyncio.run(ledger(300 if quick else 1500, Path(tmp)))
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=1))
