"""Per-call overhead of the full kernel against a bare httpx request, same upstream.

    uv run python tests/benchmarks/bench_overhead.py [--calls 2000]

Both clients POST the same chat completion to a local fake OpenAI upstream running in
its own process, one call at a time, after a warm-up. Reported: median and p99 per
call, the ratio of medians, and time to first token for streams. LiteLLM's
``acompletion`` is measured too when it is installed (``pip install litellm``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from llmkernel import Kernel

HERE = Path(__file__).parent
MESSAGES = [{"role": "user", "content": "Say hello."}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def interleaved(
    calls: dict[str, Callable[[], Awaitable[object]]], rounds: int
) -> dict[str, list[float]]:
    """Time each client once per round, in turn, so every client sees the same
    machine: a shared machine's noise then cancels out of the ratios."""
    for call in calls.values():
        for _ in range(min(200, rounds)):
            await call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            started = time.perf_counter()
            await call()
            times[name].append(time.perf_counter() - started)
    return times


def summary(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


async def run(rounds: int, base: str) -> None:
    os.environ.setdefault("BENCH_KEY", "sk-bench")
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    kernel = Kernel.from_config(
        {
            "providers": {
                "bench": {"type": "openai", "base_url": base, "api_key_env": "BENCH_KEY"}
            },
        }
    )
    try:
        import litellm
    except ImportError:
        litellm = None

    from llmkernel.http import AiohttpTransport

    async with (
        httpx.AsyncClient(base_url=base, headers={"authorization": "Bearer x"}) as client,
        httpx.AsyncClient(
            base_url=base, headers={"authorization": "Bearer x"}, transport=AiohttpTransport()
        ) as over_aiohttp,
    ):

        async def bare() -> object:
            response = await client.post("/chat/completions", json=body)
            return response.json()["choices"][0]["message"]["content"]

        async def bare_over_aiohttp() -> object:
            response = await over_aiohttp.post("/chat/completions", json=body)
            return response.json()["choices"][0]["message"]["content"]

        async def through_kernel() -> object:
            return (await kernel.achat(model="bench/gpt-4o-mini", messages=MESSAGES)).text

        async def bare_first_chunk() -> object:
            async with client.stream(
                "POST", "/chat/completions", json={**body, "stream": True}
            ) as response:
                async for _ in response.aiter_text():
                    return None
            return None

        async def kernel_first_chunk() -> object:
            stream = kernel.astream(model="bench/gpt-4o-mini", messages=MESSAGES)
            async for _ in stream:
                break
            await stream.aclose()
            return None

        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "bare httpx": bare,
            "httpx over aiohttp": bare_over_aiohttp,
            "llmkernel achat": through_kernel,
        }
        if litellm is not None:

            async def through_litellm() -> object:
                response = await litellm.acompletion(
                    model="openai/gpt-4o-mini", messages=MESSAGES, api_base=base, api_key="x"
                )
                return response.choices[0].message.content

            calls["litellm acompletion"] = through_litellm
        async with kernel:
            times = await interleaved(calls, rounds)
            first = await interleaved(
                {"bare": bare_first_chunk, "kernel": kernel_first_chunk}, rounds // 2
            )

    bare_median = summary(times["bare httpx"])[0]
    print(f"{'client':<22} {'median ms':>10} {'p99 ms':>8} {'x bare':>7}")
    # the kernel's providers send over aiohttp (llmkernel.http.AiohttpTransport); the
    # "httpx over aiohttp" row is the same transport without the kernel
    for name, samples in times.items():
        median, p99 = summary(samples)
        print(f"{name:<22} {median * 1000:10.3f} {p99 * 1000:8.3f} {median / bare_median:7.2f}")
    for baseline in ("bare httpx", "httpx over aiohttp"):
        paired = [k - b for k, b in zip(times["llmkernel achat"], times[baseline], strict=True)]
        ordered = sorted(paired)
        print(
            f"llmkernel overhead per call vs {baseline}, paired: median "
            f"{statistics.median(paired) * 1e6:.0f} us,"
            f" p99 {ordered[int(len(ordered) * 0.99) - 1] * 1e6:.0f} us"
        )
    if litellm is None:
        print("litellm: not installed (pip install litellm to measure it)")
    ttft = [k - b for k, b in zip(first["kernel"], first["bare"], strict=True)]
    print(
        f"time to first chunk: bare {statistics.median(first['bare']) * 1000:.3f} ms, "
        f"llmkernel {statistics.median(first['kernel']) * 1000:.3f} ms "
        f"(paired median difference {statistics.median(ttft) * 1e6:.0f} us)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000, help="rounds per client")
    args = parser.parse_args()
    port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(HERE / "upstream.py"), str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert upstream.stdout is not None and upstream.stdout.readline().strip() == "ready"
        asyncio.run(run(args.calls, f"http://127.0.0.1:{port}/v1"))
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)


if __name__ == "__main__":
    main()
