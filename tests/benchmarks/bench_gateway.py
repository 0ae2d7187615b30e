"""``llmkernel serve`` (1 and 2 workers) under wrk, against the fake upstream measured
directly and against LiteLLM's proxy on the same upstream.

    python tests/benchmarks/bench_gateway.py [--quick]

For each server: requests/s and p50/p99 at 1 and 50 connections (wrk, Debian package
``wrk``), the latency it adds over the upstream alone, resident memory of its whole
process tree idle and at the peak of the 50-connection load, and its start time
(process start to the first 200 of its health endpoint, second start).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from common import MODEL, free_port, upstream

# LiteLLM's proxy refuses to start without a master key; every server gets this header
MASTER_KEY = "sk-bench-3f9a1c7e5b2d4068a1e9c3b7d5f20486"
BODY = json.dumps(
    {"model": f"bench/{MODEL}", "messages": [{"role": "user", "content": "Say hello."}]}
)


def wait_for(url: str, process: subprocess.Popen[Any], timeout: float = 150.0) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def wrk(
    url: str, *, connections: int, seconds: float, threads: int = 2, body: str = BODY
) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(body)}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {MASTER_KEY}"\n'
        )
    try:
        out = subprocess.run(
            [
                "wrk",
                f"-t{min(threads, connections)}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "--latency",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        ).stdout
    finally:
        os.unlink(script.name)

    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "p99_ms": ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "non_2xx": float(errors.group(1)) if errors else 0.0,
    }


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1024


class PeakRss(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            self.peak = max(self.peak, tree_rss_mib(self.pid))


def start(argv: list[str], health: str, env: dict[str, str]) -> tuple[subprocess.Popen[Any], float]:
    started = time.perf_counter()
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        wait_for(health, process)
    except Exception as exc:
        err = stop_tree(process)
        raise RuntimeError(f"{exc}; its stderr ends: {err[-600:]}") from None
    return process, time.perf_counter() - started


def stop_tree(process: subprocess.Popen[Any]) -> str:
    """Stop a server we started, its workers included (its own session, by its id)."""
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
    err = process.stderr.read().decode(errors="replace") if process.stderr else ""
    return err[-2000:]


def measure(
    name: str,
    argv: list[str],
    health: str,
    url: str,
    env: dict[str, str],
    seconds: float,
    warm_start: bool = True,
    timed_starts: int = 1,
) -> dict[str, Any]:
    """Start the server (``timed_starts`` times, the median is its start time), then
    load it with wrk at 50 and at 1 connection, reading its memory meanwhile."""
    if warm_start:  # a first start warms the disk cache and bytecode; the next are timed
        first, _ = start(argv, health, env)
        stop_tree(first)
    starts = []
    for _ in range(timed_starts - 1):  # all but the last are stopped at once
        process, took = start(argv, health, env)
        stop_tree(process)
        starts.append(took)
    process, took = start(argv, health, env)
    starts.append(took)
    try:
        idle = tree_rss_mib(process.pid)
        wrk(url, connections=10, seconds=max(1.0, seconds / 3))  # warm up
        peak = PeakRss(process.pid)
        peak.start()
        c50 = wrk(url, connections=50, seconds=seconds)
        peak.done.set()
        peak.join()
        c1 = wrk(url, connections=1, seconds=seconds, threads=1)
        after = tree_rss_mib(process.pid)
    finally:
        stop_tree(process)
    return {
        "start_s": statistics.median(starts),
        "starts_s": starts,
        "rss_idle_mib": idle,
        "rss_load_peak_mib": peak.peak,
        "rss_after_mib": after,
        "c50": c50,
        "c1": c1,
    }


def run(quick: bool) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        return {"error": "wrk is not installed (apt-get install wrk)"}
    seconds = 3.0 if quick else 8.0
    out: dict[str, Any] = {}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMKERNEL_", "LITELLM_"))}
    env.setdefault("BENCH_KEY", "sk-bench")
    bindir = Path(sys.executable).parent
    with upstream() as base, tempfile.TemporaryDirectory(prefix="llmkernel-bench-gw-") as tmp:
        direct = f"{base}/chat/completions"
        out["upstream"] = {
            "c50": wrk(direct, connections=50, seconds=seconds),
            "c1": wrk(direct, connections=1, seconds=seconds, threads=1),
        }
        config = Path(tmp) / "gateway.toml"
        config.write_text(
            f'[providers.bench]\ntype = "openai"\nbase_url = "{base}"\napi_key_required = false\n'
            "\n[plugin.gateway]\naccess_log = false\n"
        )
        for workers in (1, 2):
            port = free_port()
            label = f"llmkernel serve, {workers} worker{'s' if workers > 1 else ''}"
            try:
                out[label] = measure(
                    label,
                    [
                        str(bindir / "llmkernel"),
                        "-c",
                        str(config),
                        "serve",
                        "--port",
                        str(port),
                        "--workers",
                        str(workers),
                    ],
                    f"http://127.0.0.1:{port}/health",
                    f"http://127.0.0.1:{port}/v1/chat/completions",
                    env,
                    seconds,
                    warm_start=workers == 1,
                    timed_starts=3,  # under a second each; LiteLLM's take 15-35 s: one
                )
            except Exception as exc:  # recorded, the run goes on
                out[label] = {"error": repr(exc)}
        if not (bindir / "litellm").exists():
            out["litellm proxy"] = {"error": "litellm[proxy] is not installed"}
            return out
        litellm_cfg = Path(tmp) / "litellm.yaml"
        litellm_cfg.write_text(
            "model_list:\n"
            f"  - model_name: bench/{MODEL}\n"
            "    litellm_params:\n"
            f"      model: openai/{MODEL}\n"
            f"      api_base: {base}\n"
            "      api_key: sk-bench\n"
            "general_settings:\n"
            f"  master_key: {MASTER_KEY}\n"
            "litellm_settings:\n"
            "  telemetry: false\n"
        )
        lenv = {
            **env,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_TELEMETRY": "False",
            "LITELLM_LOG": "ERROR",
        }
        for workers in (1, 2):
            port = free_port()
            label = f"litellm proxy, {workers} worker{'s' if workers > 1 else ''}"
            try:
                out[label] = measure(
                    label,
                    [
                        str(bindir / "litellm"),
                        "--config",
                        str(litellm_cfg),
                        "--port",
                        str(port),
                        "--host",
                        "127.0.0.1",
                        "--num_workers",
                        str(workers),
                    ],
                    f"http://127.0.0.1:{port}/health/liveliness",
                    f"http://127.0.0.1:{port}/v1/chat/completions",
                    lenv,
                    seconds,
                    warm_start=workers == 1,
                )
            except Exception as exc:
                out[label] = {"error": repr(exc)}
    up1 = out["upstream"]["c1"]
    for row in out.values():
        if "c1" in row and row is not out["upstream"]:
            row["added_p50_c1_ms"] = row["c1"]["p50_ms"] - up1["p50_ms"]
            row["added_p99_c1_ms"] = row["c1"]["p99_ms"] - up1["p99_ms"]
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=1))
