"""Shared pieces of the benchmark suite: the fake upstream, interleaved timing,
summaries, configs of the minimal and the full default stack.

Not collected by pytest (no ``test_`` names); run through ``run.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MODEL = "gpt-4o-mini"
os.environ.setdefault("BENCH_KEY", "sk-bench")
# LiteLLM fetches its model cost map from GitHub at import unless told not to; there is
# no internet here, so without this its import would include a network timeout.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_TELEMETRY", "False")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def upstream() -> Iterator[str]:
    """The fake OpenAI upstream in its own process; yields its ``/v1`` base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(HERE / "upstream.py"), str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(process)


def stop(process: subprocess.Popen[Any]) -> None:
    """Terminate a process we started (and wait for it); kill it if it lingers."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def paired(a: list[float], b: list[float]) -> list[float]:
    return [x - y for x, y in zip(a, b, strict=True)]


def interleave_sync(
    calls: dict[str, Callable[[], object]], rounds: int, warmup: int
) -> dict[str, list[float]]:
    """Each callable once per round, in turn, so the machine's noise hits all alike."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    clock = time.perf_counter
    order = list(calls.items())
    shuffle = random.Random(14).shuffle
    for _ in range(rounds):
        shuffle(order)
        for name, call in order:
            started = clock()
            call()
            times[name].append(clock() - started)
    return times


async def interleave_async(
    calls: dict[str, Callable[[], Any]], rounds: int, warmup: int
) -> dict[str, list[float]]:
    for call in calls.values():
        for _ in range(warmup):
            await call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    clock = time.perf_counter
    order = list(calls.items())
    shuffle = random.Random(14).shuffle
    for _ in range(rounds):
        shuffle(order)  # no client always runs after the same other one
        for name, call in order:
            started = clock()
            await call()
            times[name].append(clock() - started)
            # let tasks a client left behind (LiteLLM's logging callbacks) run outside
            # the next client's timing
            for _ in range(3):
                await asyncio.sleep(0)
    return times


def minimal_kernel(base: str) -> Any:
    """Kernel plus the OpenAI provider plugin, nothing else."""
    import llmkernel_openai.plugin
    from llmkernel import Kernel

    return Kernel.from_config(
        {"providers": {"bench": {"type": "openai", "base_url": base, "api_key_env": "BENCH_KEY"}}},
        plugins=[llmkernel_openai.plugin],
        entry_points=False,
    )


def full_config(base: str, tmp: Path, durability: str = "durable") -> dict[str, Any]:
    """The full default stack: every first-party plugin installed, a routing strategy
    with the breaker and latency metrics, a rate limit, the cache (missed), the
    durable ledger with a budget (a reservation a call), prices."""
    return {
        "providers": {"bench": {"type": "openai", "base_url": base, "api_key_env": "BENCH_KEY"}},
        "prices": {f"openai/{MODEL}": {"input": "0.15", "output": "0.60"}},
        "models": {"fast": [{"target": f"bench/{MODEL}", "weight": 1, "tier": "gold"}]},
        "routing": {"strategy": "latency"},
        "plugin": {
            "routing": {"breaker": {"enabled": True}},
            "ratelimit": {
                "limits": {
                    "bench": {"requests_per_minute": 100_000_000, "tokens_per_minute": 10**12}
                }
            },
            "cache": {"enabled": True, "path": str(tmp / "cache.db")},
            "ledger": {"path": str(tmp / "ledger.db"), "durability": durability},
            "budgets": {
                "allow_unpriced": False,
                "limits": [{"name": "monthly", "amount": "1000000", "period": "month"}],
            },
        },
    }


def full_kernel(base: str, tmp: Path, durability: str = "durable") -> Any:
    from llmkernel import Kernel

    return Kernel.from_config(full_config(base, tmp, durability))
