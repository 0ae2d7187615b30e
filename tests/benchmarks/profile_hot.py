"""Profiles of the figures that miss their targets (pyinstrument), for docs/performance.md.

    python tests/benchmarks/profile_hot.py SCENARIO [--calls N] [--html out.html]

SCENARIO: minimal, full, sync-full, stream, concurrent50, cache-memory, cache-sqlite,
tokens, budget. Each runs the same calls as the benchmark, many times, under
pyinstrument (in-process, so the upstream runs in its own process and is not profiled).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
from pathlib import Path
from typing import Any

from common import MODEL, full_kernel, minimal_kernel, upstream


async def scenario(name: str, base: str, calls: int, tmp: Path, profiler: Any) -> None:
    fresh = itertools.count()
    messages = [{"role": "user", "content": "Say hello."}]
    if name in ("minimal", "stream", "concurrent50"):
        kernel = minimal_kernel(base)
    elif name in ("full",):
        kernel = full_kernel(base, tmp)
    else:
        kernel = None
    if name == "minimal":
        call = lambda: kernel.achat(model=f"bench/{MODEL}", messages=messages)  # noqa: E731
    elif name == "full":
        call = lambda: kernel.achat(  # noqa: E731
            model="fast", messages=[{"role": "user", "content": f"hi {next(fresh)}"}]
        )
    elif name == "stream":

        async def call() -> None:
            async for _ in kernel.astream(model=f"bench/{MODEL}", messages=messages):
                pass
    elif name == "concurrent50":

        async def call() -> None:
            await asyncio.gather(
                *(kernel.achat(model=f"bench/{MODEL}", messages=messages) for _ in range(50))
            )

        calls = max(1, calls // 50)
    elif name.startswith("cache"):
        import llmkernel_cache.plugin
        import llmkernel_openai.plugin
        from llmkernel import Kernel

        cache = (
            {"path": ""}
            if name == "cache-memory"
            else {"path": str(tmp / "c.db"), "memory_entries": 0, "memory_bytes": 0}
        )
        kernel = Kernel.from_config(
            {
                "providers": {
                    "bench": {"type": "openai", "base_url": base, "api_key_env": "BENCH_KEY"}
                },
                "plugin": {"cache": {"enabled": True, **cache}},
            },
            plugins=[llmkernel_openai.plugin, llmkernel_cache.plugin],
            entry_points=False,
        )
        call = lambda: kernel.achat(model=f"bench/{MODEL}", messages=messages)  # noqa: E731
    elif name == "budget":
        import llmkernel_budgets.plugin
        import llmkernel_ledger.plugin
        import llmkernel_mock.plugin
        import llmkernel_prices.plugin
        from llmkernel import Kernel

        kernel = Kernel.from_config(
            {
                "providers": {"m": {"type": "mock"}},
                "prices": {"mock/echo": {"input": "1", "output": "2"}},
                "plugin": {
                    "ledger": {"path": str(tmp / "l.db")},
                    "budgets": {"limits": [{"name": "m", "amount": "1000000", "period": "month"}]},
                },
            },
            plugins=[
                llmkernel_mock.plugin,
                llmkernel_prices.plugin,
                llmkernel_ledger.plugin,
                llmkernel_budgets.plugin,
            ],
            entry_points=False,
        )
        call = lambda: kernel.achat(model="m/echo", messages=messages)  # noqa: E731
    elif name == "tokens":
        from bench_local import SHORT_CHAT, small_encoding

        import llmkernel_openai.plugin
        import llmkernel_tiktoken.plugin
        from llmkernel import Kernel

        kernel = Kernel.from_config(
            {"providers": {"bench": {"type": "openai", "base_url": base}}},
            plugins=[llmkernel_openai.plugin, llmkernel_tiktoken.plugin],
            entry_points=False,
        )
        llmkernel_tiktoken.plugin.counter_of(kernel).encodings.register(
            small_encoding(), "o200k_base"
        )

        async def call() -> None:
            kernel.count_tokens(f"bench/{MODEL}", SHORT_CHAT)
    else:
        raise SystemExit(f"unknown scenario {name}")
    for _ in range(50):
        await call()
    profiler.start()
    for _ in range(calls):
        await call()
    profiler.stop()
    await kernel.aclose()


def sync_full(base: str, calls: int, tmp: Path, profiler: Any) -> None:
    """``Kernel.chat`` through the full stack: the calling thread runs the loop."""
    kernel = full_kernel(base, tmp)
    fresh = itertools.count()
    for _ in range(50):
        kernel.chat(model="fast", messages=[{"role": "user", "content": f"hi {next(fresh)}"}])
    profiler.start()
    for _ in range(calls):
        kernel.chat(model="fast", messages=[{"role": "user", "content": f"hi {next(fresh)}"}])
    profiler.stop()
    kernel.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--html")
    args = parser.parse_args()
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0002, async_mode="disabled")
    with upstream() as base, tempfile.TemporaryDirectory() as tmp:
        if args.scenario == "sync-full":
            sync_full(base, args.calls, Path(tmp), profiler)
        else:
            asyncio.run(scenario(args.scenario, base, args.calls, Path(tmp), profiler))
    print(profiler.output_text(unicode=False, color=False, show_all=False))
    if args.html:
        Path(args.html).write_text(profiler.output_html())


if __name__ == "__main__":
    main()
