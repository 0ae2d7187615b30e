"""latency through the kernel: warm-up, then the fast candidate; back when it degrades."""

from __future__ import annotations

import llmkernel_routing.plugin
import llmkernel_strategy_latency.plugin
from llmkernel.testing.scripted import Slow, make_kernel

PLUGINS = (llmkernel_routing.plugin, llmkernel_strategy_latency.plugin)


def test_prefers_the_fast_candidate_and_moves_when_it_degrades():
    slow = [Slow(0.05, "slow")] * 100
    fast = [Slow(0.002, "fast")] * 12 + [Slow(0.15, "degraded")] * 100
    kernel = make_kernel(
        slow,
        fast,
        plugins=PLUGINS,
        routing={"strategy": "latency", "latency": {"half_life": 0}},
    )
    with kernel:
        warm = [kernel.chat("group", "hi").provider for _ in range(2)]
        assert sorted(warm) == ["a", "b"]  # each measured once first
        picks = [kernel.chat("group", "hi").provider for _ in range(10)]
        assert picks == ["b"] * 10  # the fast one, 11 calls so far on b
        later = [kernel.chat("group", "hi").provider for _ in range(8)]
        # b's 12th call is fast, then its calls take 0.15 s: its average rises past a's
        assert later[-1] == "a"
        assert "a" in later[:5]


def test_streams_are_ordered_by_time_to_first_token():
    kernel = make_kernel(
        [Slow(0.002, ["x", "y"])] * 20,
        [Slow(0.04, ["x", "y"])] * 20,
        plugins=PLUGINS,
        routing={"strategy": "latency"},
    )
    with kernel:
        for _ in range(2):
            kernel.stream("group", "hi").collect()
        assert [kernel.stream("group", "hi").collect().provider for _ in range(3)] == ["a"] * 3
        assert kernel.stats()["deployments"]["a/m1"]["ttft_ms"]["count"] >= 3
