"""The gateway under wrk, against the same fast upstream measured directly.

    uv run python contrib/gateway/benchmarks/bench_gateway.py [--duration 10] [--transport aiohttp]

Starts ``tests/benchmarks/upstream.py`` (a fake OpenAI server: asyncio, keep-alive,
canned answers) in its own process, then ``llmkernel serve`` (one worker) with an
``openai`` provider pointed at it, and runs ``wrk`` (Debian package ``wrk``):

- requests/s at 50 connections (2 threads), upstream alone and through the gateway;
- p50 latency at one connection, both ways: the gateway's added p50 is the difference;
- the gateway's resident memory after the load (VmRSS and the peak, VmHWM);
- the gateway's start time: process start to the first 200 from ``/health``, with
  compiled bytecode (kept in a temporary ``PYTHONPYCACHEPREFIX``, as an installed
  package has it) and compiling every module (what ``PYTHONDONTWRITEBYTECODE=1``
  without ``.pyc`` files costs at each start).

Everything runs on this machine, so wrk, the gateway and the upstream share its cores;
compare ratios from the same run. See docs/performance.md ("Gateway").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[3]
UPSTREAM = ROOT / "tests" / "benchmarks" / "upstream.py"
BODY = json.dumps(
    {"model": "bench/gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello."}]}
)
STARTS = 3  # timed starts of each kind
STREAM_BODY = json.dumps(
    {
        "model": "bench/gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say hello."}],
        "stream": True,
    }
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout: float = 60.0, method: str = "GET") -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        try:
            if method == "GET":
                httpx.get(url, timeout=1.0)
            else:
                httpx.post(url, content=BODY, timeout=1.0)
            return time.perf_counter() - started
        except httpx.HTTPError:
            time.sleep(0.01)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def wrk(
    url: str, *, connections: int, duration: int, body: str, threads: int = 2
) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(body)}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
    try:
        out = subprocess.run(
            [
                "wrk",
                f"-t{min(threads, connections)}",
                f"-c{connections}",
                f"-d{duration}s",
                "--latency",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "non_2xx": float(errors.group(1)) if errors else 0,
    }


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def rss_mib(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def start_gateway(
    config: Path, port: int, *, pycache: Path | None = None
) -> tuple[subprocess.Popen[bytes], float]:
    """Start ``llmkernel serve``; ``pycache``: keep compiled bytecode there (as an
    installed package has it), else compile every module at each start when
    ``PYTHONDONTWRITEBYTECODE`` is set (as in this project's sessions)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMKERNEL_")}
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "llmkernel_cli", "-c", str(config), "serve", "--port", str(port)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    wait_for(f"http://127.0.0.1:{port}/health")
    return process, time.perf_counter() - started


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--transport", choices=["aiohttp", "httpx"], default="aiohttp")
    parser.add_argument("--stream", action="store_true", help="also measure streamed requests")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    up_port, gw_port, pt_port = free_port(), free_port(), free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(UPSTREAM), str(up_port)], stdout=subprocess.DEVNULL
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    config = tmp / "gateway.toml"
    config.write_text(
        f"""
[providers.bench]
type = "openai"
base_url = "http://127.0.0.1:{up_port}/v1"
api_key_required = false

[plugin.gateway]
access_log = false
transport = "{args.transport}"
"""
    )
    gateway = None
    passthrough = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("passthrough.py")),
            str(pt_port),
            f"http://127.0.0.1:{up_port}",
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{up_port}/v1/chat/completions", method="POST")
        # a first start warms the disk cache and writes the bytecode; the next are timed
        pycache = tmp / "pycache"
        first, _ = start_gateway(config, gw_port, pycache=pycache)
        stop(first)
        starts: dict[str, list[float]] = {"bytecode": [], "compiling": []}
        for _ in range(STARTS):
            for kind, times in starts.items():
                process, seconds = start_gateway(
                    config, gw_port, pycache=pycache if kind == "bytecode" else None
                )
                stop(process)
                times.append(seconds)
        start_seconds = statistics.median(starts["bytecode"])
        cold_seconds = statistics.median(starts["compiling"])
        gateway, _ = start_gateway(config, gw_port, pycache=pycache)
        up = f"http://127.0.0.1:{up_port}/v1/chat/completions"
        gw = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
        pt = f"http://127.0.0.1:{pt_port}/v1/chat/completions"
        wait_for(pt, method="POST")
        idle_rss, _ = rss_mib(gateway.pid)
        wrk(gw, connections=10, duration=2, body=BODY)  # warm up
        rows = {}
        for name, url in (("upstream", up), ("passthrough", pt), ("gateway", gw)):
            rows[name] = {
                "c50": wrk(url, connections=50, duration=args.duration, body=BODY),
                "c1": wrk(url, connections=1, duration=args.duration, body=BODY, threads=1),
            }
        if args.stream:
            for name, url in (("upstream", up), ("gateway", gw)):
                rows[name]["stream_c50"] = wrk(
                    url, connections=50, duration=args.duration, body=STREAM_BODY
                )
        rss, peak = rss_mib(gateway.pid)
    finally:
        if gateway is not None:
            stop(gateway)
        stop(passthrough)
        stop(upstream)
        shutil.rmtree(tmp, ignore_errors=True)
    up50, gw50 = rows["upstream"]["c50"], rows["gateway"]["c50"]
    up1, gw1 = rows["upstream"]["c1"], rows["gateway"]["c1"]
    pt50, pt1 = rows["passthrough"]["c50"], rows["passthrough"]["c1"]
    python = sys.version.split()[0]
    print(f"transport: {args.transport}; wrk {args.duration} s per run; python {python}")
    print("| what | upstream alone | minimal pass-through | through the gateway |")
    print("|---|---|---|---|")
    print(
        f"| requests/s, 50 connections | {up50['rps']:,.0f} | {pt50['rps']:,.0f} "
        f"| {gw50['rps']:,.0f} ({gw50['rps'] / pt50['rps']:.0%} of the pass-through) |"
    )
    print(
        f"| p50 / p99 at 50 connections | {up50['p50_ms']:.2f} / {up50['p99_ms']:.2f} ms "
        f"| {pt50['p50_ms']:.2f} / {pt50['p99_ms']:.2f} ms "
        f"| {gw50['p50_ms']:.2f} / {gw50['p99_ms']:.2f} ms |"
    )
    print(
        f"| p50 at 1 connection | {up1['p50_ms']:.3f} ms | {pt1['p50_ms']:.3f} ms "
        f"| {gw1['p50_ms']:.3f} ms |"
    )
    if args.stream:
        us, gs = rows["upstream"]["stream_c50"], rows["gateway"]["stream_c50"]
        print(f"| streamed requests/s, 50 connections | {us['rps']:,.0f} | | {gs['rps']:,.0f} |")
    print(
        f"\nadded p50 at one connection: gateway {gw1['p50_ms'] - up1['p50_ms']:.3f} ms, "
        f"pass-through {pt1['p50_ms'] - up1['p50_ms']:.3f} ms"
    )
    print(
        f"gateway resident memory: {idle_rss:.0f} MiB idle, {rss:.0f} MiB after load, "
        f"peak {peak:.0f} MiB"
    )
    print(
        f"gateway start (process start to first /health 200, median of {STARTS}): "
        f"{start_seconds:.2f} s with compiled bytecode, {cold_seconds:.2f} s compiling "
        "every module (no .pyc: PYTHONDONTWRITEBYTECODE, or uv without --compile-bytecode)"
    )
    print(f"non-2xx answers from the gateway: {int(gw50['non_2xx'] + gw1['non_2xx'])}")


if __name__ == "__main__":
    main()
