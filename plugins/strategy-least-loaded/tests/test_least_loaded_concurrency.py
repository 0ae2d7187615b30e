"""least-loaded under real concurrency: the routing gate counts what is in flight."""

from __future__ import annotations

import asyncio
from collections import Counter

import llmkernel_routing.plugin
import llmkernel_strategy_least_loaded.plugin
from llmkernel.testing.scripted import Slow, make_kernel, scripted

PLUGINS = (llmkernel_routing.plugin, llmkernel_strategy_least_loaded.plugin)


async def _run(kernel, workers: int, calls: int) -> Counter[str]:
    answered: Counter[str] = Counter()

    async def worker() -> None:
        for _ in range(calls):
            response = await kernel.achat("group", "hi")
            answered[response.provider] += 1

    await asyncio.gather(*(worker() for _ in range(workers)))
    return answered


async def test_concurrent_calls_spread_evenly_over_equal_deployments():
    scripts = [[Slow(0.02, "x")] * 200 for _ in range(3)]
    kernel = make_kernel(*scripts, plugins=PLUGINS, routing={"strategy": "least-loaded"})
    async with kernel:
        answered = await _run(kernel, workers=12, calls=5)
    assert sum(answered.values()) == 60
    assert all(15 <= answered[p] <= 25 for p in "abc"), answered
    stats = kernel.stats()["deployments"]
    assert all(stats[f"{p}/m1"]["in_flight"] == 0 for p in "abc")


async def test_a_slow_deployment_carries_less_of_the_load():
    slow = [Slow(0.2, "slow")] * 100
    fast = [Slow(0.01, "fast")] * 200
    kernel = make_kernel(slow, fast, fast, plugins=PLUGINS, routing={"strategy": "least-loaded"})
    async with kernel:
        answered = await _run(kernel, workers=6, calls=10)
    assert sum(answered.values()) == 60
    # calls pile up on the slow one, so new calls go elsewhere
    assert answered["a"] < answered["b"] and answered["a"] < answered["c"], answered
    assert len(scripted(kernel, "a").requests) == answered["a"]
