"""Fleet-wide rate limits: two processes (two kernels, each with its own state
dirs) against one real redis-server, Redis killed mid-burst and restarted, the
local fallback at limit/N, the opt-out and fail-closed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import llmkernel_ratelimit.plugin as ratelimit
import llmkernel_redis.plugin as redis_plugin
from llmkernel import Kernel
from llmkernel.errors import RefusedError
from llmkernel.testing.scripted import ScriptedPlugin
from llmkernel_ratelimit.plugin import gate_of
from llmkernel_ratelimit.shared import SharedStore
from llmkernel_ratelimit.store import MemoryStore
from llmkernel_redis.shared import shared_for
from llmkernel_redis.testing import RedisServer

WORKER = Path(__file__).with_name("redis_worker.py")


@pytest.fixture(autouse=True)
def _no_env_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMKERNEL_REDIS_URL", raising=False)


def config(url: str, limit: dict[str, Any], **redis: Any) -> dict[str, Any]:
    return {
        "providers": {"a": {"type": "scripted"}},
        "redis": {"url": url, "timeout": 5, "connect_timeout": 5, "retry_interval": 0.2, **redis},
        "plugin": {
            "ratelimit": {"mode": "reject", "limits": {"*": {**limit, "per": ["key"]}}},
        },
    }


def kernel_for(cfg: dict[str, Any]) -> Kernel:
    return Kernel.from_config(
        cfg, plugins=[ScriptedPlugin(), ratelimit, redis_plugin], entry_points=False
    )


def run_two_processes(tmp_path: Path, cfg: dict[str, Any], calls: int) -> list[dict[str, Any]]:
    start = tmp_path / "start"
    procs = []
    for name in ("one", "two"):
        home = tmp_path / name  # as on two machines: own data, cache and config dirs
        home.mkdir()
        path = home / "config.json"
        path.write_text(json.dumps(cfg))
        env = {
            **os.environ,
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_STATE_HOME": str(home / "state"),
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), str(path), str(calls), str(start)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                text=True,
            )
        )
    time.sleep(1.5)  # both kernels built and waiting
    start.touch()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    return outputs


def tally(outputs: list[dict[str, Any]]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for output in outputs:
        for result in output["results"]:
            counts[result.split(":")[0]] += 1
            assert not result.startswith("error"), result
    return counts


def test_200_requests_over_two_processes_never_pass_a_keys_request_limit(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    outputs = run_two_processes(
        tmp_path, config(redis_server.url, {"requests_per_minute": 20}, instances=2), 100
    )
    assert [o["redis"]["outages"] for o in outputs] == [0, 0]  # Redis answered throughout
    counts = tally(outputs)
    # not 40: each process alone would admit 20, the fleet admits 20 in all
    assert counts == {"ok": 20, "refused": 180}


def test_200_requests_over_two_processes_never_pass_a_keys_token_limit(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    limit = 330  # each call reserves its input estimate + 20, uses 11
    cfg = config(redis_server.url, {"tokens_per_minute": limit, "requests_per_minute": 10_000})
    outputs = run_two_processes(tmp_path, cfg, 100)
    counts = tally(outputs)
    used = [int(r.split(":")[1]) for o in outputs for r in o["results"] if r.startswith("ok")]
    assert 0 < sum(used) <= limit and counts["ok"] + counts["refused"] == 200

    async def window() -> int:
        kernel = kernel_for(cfg)
        async with kernel:
            shared = shared_for(kernel, "ratelimit")
            assert shared is not None
            state = await shared.windows().state("*|key=team-a|tokens")
            return state.used

    # the window holds the real usage of every admitted call, corrections included
    assert asyncio.run(window()) == sum(used)


async def call(kernel: Kernel) -> str:
    try:
        await kernel.achat("a/m1", "hi", metadata={"key": "team-a"})
    except RefusedError as exc:
        assert exc.kind == "rate_limit"
        return "refused"
    return "ok"


async def test_redis_killed_mid_burst_then_restarted(redis_server: RedisServer) -> None:
    cfg = config(redis_server.url, {"requests_per_minute": 40}, instances=2)
    kernel, other = kernel_for(cfg), kernel_for(cfg)
    store = gate_of(kernel).store  # type: ignore[union-attr]
    assert isinstance(store, SharedStore)
    async with kernel, other:
        assert [await call(kernel) for _ in range(5)] == ["ok"] * 5

        async def staggered(i: int) -> str:
            await asyncio.sleep(i * 0.01)
            return await call(kernel)

        killer = threading.Timer(0.1, redis_server.kill)
        killer.start()
        burst = await asyncio.gather(*(staggered(i) for i in range(40)))  # nothing else raised
        killer.join()
        stats = kernel.stats()["redis"]
        assert stats["state"] == "degraded" and stats["reason"]
        local = store.admitted_locally
        # while Redis is away this instance admits up to 40 / 2 on its own
        assert 0 < local <= 20 and burst.count("ok") >= local
        assert burst.count("refused") == 40 - burst.count("ok")

        redis_server.start()  # back, empty
        await asyncio.sleep(0.25)
        assert await call(kernel) == "ok"  # retried: recovered, local admissions handed over
        assert kernel.stats()["redis"]["state"] == "ok"
        shared = shared_for(kernel, "ratelimit")
        assert shared is not None
        state = await shared.windows().state("*|key=team-a|requests")
        assert state.used == local + 1  # each local admission counted once, plus this one
        # coordinated again: the other instance sees the same window
        results = [await call(k) for _ in range(30) for k in (kernel, other)]
        assert results.count("ok") == 40 - (local + 1)


async def test_fail_closed_refuses_while_redis_is_away(redis_server: RedisServer) -> None:
    cfg = config(redis_server.url, {"requests_per_minute": 40}, fail_closed=True)
    async with kernel_for(cfg) as kernel:
        assert await call(kernel) == "ok"
        redis_server.kill()
        with pytest.raises(RefusedError, match="fail_closed = true") as info:
            await kernel.achat("a/m1", "hi", metadata={"key": "team-a"})
        assert info.value.retry_after == 0.2


async def test_opting_out_keeps_the_counts_in_this_process(redis_server: RedisServer) -> None:
    cfg = config(redis_server.url, {"requests_per_minute": 2})
    cfg["plugin"]["ratelimit"]["shared"] = False
    one, two = kernel_for(cfg), kernel_for(cfg)
    assert isinstance(gate_of(one).store, MemoryStore)  # type: ignore[union-attr]
    async with one, two:
        results = [await call(k) for _ in range(3) for k in (one, two)]
    assert results.count("ok") == 4  # 2 each: nothing shared


async def test_waiting_across_instances(redis_server: RedisServer) -> None:
    cfg = config(redis_server.url, {"requests_per_minute": 60, "window": 1})  # 1 per second
    cfg["plugin"]["ratelimit"]["mode"] = "wait"
    one, two = kernel_for(cfg), kernel_for(cfg)
    loop = asyncio.get_running_loop()
    async with one, two:
        started = loop.time()
        results = await asyncio.gather(*(call(k) for k in (one, two, one)))
        took = loop.time() - started
    assert results == ["ok"] * 3
    assert took >= 1.9  # three admissions, one per second, whichever instance asked
