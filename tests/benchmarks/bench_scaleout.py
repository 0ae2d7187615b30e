"""Scale-out: gateway instances with and without a shared Redis, under wrk, and the
cost of a Redis round trip.

    python tests/benchmarks/bench_scaleout.py [--quick]

In one run, against the same fake upstream (``common.upstream``) and one
``redis-server`` started here (free port, no persistence):

- ``redis``: p50/p99 of one ``llmkernel.ratelimit`` take (the call every attempt
  makes with ``[redis]``) and of a ``PING``, one connection, sequential: the round
  trips Redis adds (goal: take p50 under 0.3 ms);
- ``breakers``: p50/p99 of the fleet's breaker read (``llmkernel.breakers`` view of
  10 deployments and 3 providers' health: once a second per instance, in the
  background) and of a half-open probe's claim (the one call a probe adds);
- ``one instance``: ``llmkernel serve`` with a rate limit kept in memory;
- ``one instance, redis``: the same limit fleet-wide through Redis;
- ``two instances, redis``: two servers on one Redis, two wrk runs at once, one per
  instance (the load balancer's split), requests/s added up (goal: 1.6x one
  instance, where the 2-core machine's CPU allows: wrk, the upstream and Redis
  share it); each run says how busy the machine's cores were and how many cores
  the gateways used (``cpu``), which shows when the CPU is the limit.

Phase 2 of the scale-out work adds budgets, cache and keys to the config here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench_gateway import start, stop_tree, wrk
from common import free_port, upstream

LIMITS = (
    '\n[plugin.ratelimit]\nmode = "reject"\n'
    '\n[plugin.ratelimit.limits."*"]\nrequests_per_minute = 100000000\n'
)


def redis_round_trips(url: str, count: int) -> dict[str, Any]:
    from llmkernel_redis.limits import SharedWindows, WindowClaim
    from llmkernel_redis.link import RedisLink

    async def run() -> dict[str, Any]:
        link = RedisLink(url, timeout=2, pool_size=1)
        windows = SharedWindows(link, "bench:")
        claims = [
            WindowClaim(bucket="b|requests", limit=1e12, window=60, amount=1),
            WindowClaim(bucket="b|tokens", limit=1e12, window=60, amount=500),
        ]
        take, ping = [], []
        for i in range(count + 100):
            started = time.perf_counter()
            await windows.take(f"a{i}", claims)
            middle = time.perf_counter()
            await link.client().ping()
            ended = time.perf_counter()
            if i >= 100:  # warmed up
                take.append((middle - started) * 1000)
                ping.append((ended - middle) * 1000)
        await link.aclose()
        return {"take": _summary(take), "ping": _summary(ping), "count": count}

    found = asyncio.run(run())
    try:  # the loop `llmkernel serve` runs on, where installed
        import uvloop
    except ImportError:
        return found
    return {**found, "uvloop": uvloop.run(run())}


def breaker_round_trips(url: str, count: int) -> dict[str, Any]:
    from llmkernel_redis.breakers import SharedBreakers
    from llmkernel_redis.link import RedisLink

    async def run() -> dict[str, Any]:
        link = RedisLink(url, timeout=2, pool_size=1)
        breakers = SharedBreakers(link, "bench:")
        deployments = [f"p{i % 3}/m{i}" for i in range(10)]
        await breakers.open(deployments[0], 3600, reason="bench")
        await breakers.put_healths({"p0": (False, "HTTP 503")}, ttl=3600)
        view, claim = [], []
        for i in range(count + 100):
            started = time.perf_counter()
            await breakers.view(deployments, ["p0", "p1", "p2"])
            middle = time.perf_counter()
            await breakers.claim_probe(deployments[i % 10], 60)
            ended = time.perf_counter()
            if i >= 100:  # warmed up
                view.append((middle - started) * 1000)
                claim.append((ended - middle) * 1000)
        await link.aclose()
        return {"view": _summary(view), "claim_probe": _summary(claim), "count": count}

    return asyncio.run(run())


def _summary(values: list[float]) -> dict[str, float]:
    values.sort()
    return {"p50_ms": statistics.median(values), "p99_ms": values[int(len(values) * 0.99)]}


def serve(config: Path, env: dict[str, str]) -> tuple[Any, str]:
    port = free_port()
    argv = [str(Path(sys.executable).parent / "llmkernel"), "-c", str(config), "serve"]
    process, _ = start([*argv, "--port", str(port)], f"http://127.0.0.1:{port}/health", env)
    return process, f"http://127.0.0.1:{port}/v1/chat/completions"


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of every core so far (``/proc/stat``)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def process_ticks(pid: int) -> int:
    """user + system clock ticks of ``pid`` (``/proc/<pid>/stat``)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def load(urls: list[str], seconds: float, pids: list[int]) -> dict[str, Any]:
    """wrk on every URL at once (50 connections each); requests/s added up, and
    where the CPU went meanwhile: the machine's cores busy, the gateways' share."""
    results: list[dict[str, float]] = [{} for _ in urls]

    def one(i: int) -> None:
        results[i] = wrk(urls[i], connections=50, seconds=seconds)

    for url in urls:
        wrk(url, connections=10, seconds=1)  # warm up
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(urls))]
    busy0, total0 = machine_ticks()
    gateways0 = sum(process_ticks(pid) for pid in pids)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    busy1, total1 = machine_ticks()
    gateways1 = sum(process_ticks(pid) for pid in pids)
    cores = os.cpu_count() or 1
    elapsed = (total1 - total0) / cores  # ticks of one core's time
    cpu = {
        "cores": cores,
        "machine_busy": round((busy1 - busy0) / max(total1 - total0, 1), 3),
        "gateways_cores": round((gateways1 - gateways0) / max(elapsed, 1), 2),
    }
    c1 = wrk(urls[0], connections=1, seconds=seconds, threads=1)
    return {"rps": sum(r["rps"] for r in results), "each": results, "c1": c1, "cpu": cpu}


def run(quick: bool) -> dict[str, Any]:
    missing = [tool for tool in ("wrk", "redis-server") if shutil.which(tool) is None]
    if missing:
        return {"error": f"not installed: {', '.join(missing)}"}
    from llmkernel_redis.testing import RedisServer

    seconds = 3.0 if quick else 8.0
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMKERNEL_")}
    env.setdefault("BENCH_KEY", "sk-bench")
    out: dict[str, Any] = {}
    with (
        upstream() as base,
        tempfile.TemporaryDirectory(prefix="llmkernel-bench-scale-") as tmp,
    ):
        server = RedisServer(shutil.which("redis-server") or "", Path(tmp))
        server.start()
        try:
            out["redis"] = redis_round_trips(server.url, 2000 if quick else 10000)
            out["breakers"] = breaker_round_trips(server.url, 2000 if quick else 10000)
            common = (
                f'[providers.bench]\ntype = "openai"\nbase_url = "{base}"\n'
                "api_key_required = false\n\n[plugin.gateway]\naccess_log = false\n" + LIMITS
            )
            local = Path(tmp) / "local.toml"
            local.write_text(common)
            shared = Path(tmp) / "shared.toml"
            shared.write_text(f'{common}\n[redis]\nurl = "{server.url}"\ninstances = 2\n')
            for label, configs in (
                ("one instance", [local]),
                ("one instance, redis", [shared]),
                ("two instances, redis", [shared, shared]),
            ):
                processes = []
                try:
                    urls = []
                    for config in configs:
                        process, url = serve(config, env)
                        processes.append(process)
                        urls.append(url)
                    out[label] = load(urls, seconds, [p.pid for p in processes])
                except Exception as exc:  # recorded, the run goes on
                    out[label] = {"error": repr(exc)}
                finally:
                    for process in processes:
                        stop_tree(process)
        finally:
            server.stop()
    one = out.get("one instance, redis", {}).get("rps")
    two = out.get("two instances, redis", {}).get("rps")
    if one and two:
        out["two_over_one"] = two / one
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=1))
