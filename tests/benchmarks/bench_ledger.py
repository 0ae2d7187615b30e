"""What the ledger's durability costs a call: mock-provider calls with no ledger, with
``durability = "fast"`` (rows committed in the background) and with the durable
default (a call returns once its row is committed), interleaved in one run; one
caller sync and async, then 50 concurrent callers (group commit).

    python tests/benchmarks/bench_ledger.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from common import interleave_async, interleave_sync, median, paired, pct

from llmkernel import Kernel

MODES = ("no ledger", "fast", "durable")
MESSAGES = [{"role": "user", "content": "hello"}]


def kernel(mode: str, path: Path) -> Kernel:
    import llmkernel_ledger.plugin
    import llmkernel_mock.plugin

    plugins: list[Any] = [llmkernel_mock.plugin]
    config: dict[str, Any] = {"providers": {"m": {"type": "mock"}}}
    if mode != "no ledger":
        plugins.append(llmkernel_ledger.plugin)
        config["plugin"] = {"ledger": {"path": str(path), "durability": mode}}
    return Kernel.from_config(config, plugins=plugins, entry_points=False)


def summary(times: dict[str, list[float]]) -> dict[str, Any]:
    base = times["no ledger"]
    out: dict[str, Any] = {}
    for mode, samples in times.items():
        diff = paired(samples, base)
        out[mode] = {
            "median_us": median(samples) * 1e6,
            "ratio": median(samples) / median(base),
            "added_median_us": median(diff) * 1e6,
            "added_p99_us": pct(diff, 0.99) * 1e6,
        }
    return out


def per_call_sync(rounds: int, tmp: Path) -> dict[str, Any]:
    kernels = {mode: kernel(mode, tmp / f"sync-{i}.db") for i, mode in enumerate(MODES)}
    calls = {
        mode: (lambda k=k: k.chat(model="m/echo", messages=MESSAGES)) for mode, k in kernels.items()
    }
    try:
        return summary(interleave_sync(calls, rounds, warmup=min(200, rounds // 4)))
    finally:
        for k in kernels.values():
            k.close()


async def per_call_async(rounds: int, tmp: Path) -> dict[str, Any]:
    kernels = {mode: kernel(mode, tmp / f"async-{i}.db") for i, mode in enumerate(MODES)}
    calls = {
        mode: (lambda k=k: k.achat(model="m/echo", messages=MESSAGES))
        for mode, k in kernels.items()
    }
    try:
        return summary(await interleave_async(calls, rounds, warmup=min(200, rounds // 4)))
    finally:
        for k in kernels.values():
            await k.aclose()


async def concurrent(callers: int, seconds: float, reps: int, tmp: Path) -> dict[str, Any]:
    """Calls/s of ``callers`` concurrent callers, each mode in turn, ``reps`` times."""
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    for rep in range(reps):
        for i, mode in enumerate(MODES):
            k = kernel(mode, tmp / f"conc-{rep}-{i}.db")
            await k.achat(model="m/echo", messages=MESSAGES)
            done = 0
            stop = time.perf_counter() + seconds

            async def loop(k: Kernel = k) -> None:
                nonlocal done
                while time.perf_counter() < stop:
                    await k.achat(model="m/echo", messages=MESSAGES)
                    done += 1

            started = time.perf_counter()
            await asyncio.gather(*(loop() for _ in range(callers)))
            await k.aclose()  # fast mode: its queue is committed here, and timed
            rates[mode].append(done / (time.perf_counter() - started))
    out = {mode: {"calls_per_s": median(v), "runs": v} for mode, v in rates.items()}
    for mode in MODES:
        out[mode]["ratio"] = out[mode]["calls_per_s"] / out["no ledger"]["calls_per_s"]
    return out


def run(quick: bool) -> dict[str, Any]:
    rounds = 500 if quick else 3000
    with tempfile.TemporaryDirectory(prefix="llmkernel-bench-ledger-") as tmp:
        root = Path(tmp)
        return {
            "per_call_sync": per_call_sync(rounds, root),
            "per_call_async": asyncio.run(per_call_async(rounds, root)),
            "concurrent_50": asyncio.run(concurrent(50, 1.0 if quick else 2.0, 3, root)),
        }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=1))
