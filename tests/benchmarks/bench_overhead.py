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


async def timed(call: Callable[[], Awaitable[object]], calls: int) -> list[float]:
    for _ in range(min(200, calls)):
        await call()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return times


def summary(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


async def run(calls: int, base: str) -> None:
    os.environ.setdefault("BENCH_KEY", "sk-bench")
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    results: dict[str, tuple[float, float]] = {}

    async with httpx.AsyncClient(base_url=base, headers={"authorization": "Bearer x"}) as client:

        async def bare() -> object:
            response = await client.post("/chat/completions", json=body)
            return response.json()["choices"][0]["message"]["content"]

        results["bare httpx"] = summary(await timed(bare, calls))

        async def bare_ttft() -> object:
            async with client.stream(
                "POST", "/chat/completions", json={**body, "stream": True}
            ) as response:
                async for _ in response.aiter_text():
                    return None
            return None

        ttft_bare = summary(await timed(bare_ttft, calls // 4))

    kernel = Kernel.from_config(
        {
            "providers": {
                "bench": {"type": "openai", "base_url": base, "api_key_env": "BENCH_KEY"}
            },
        }
    )
    async with kernel:

        async def through_kernel() -> object:
            return (await kernel.achat(model="bench/gpt-4o-mini", messages=MESSAGES)).text

        results["llmkernel achat"] = summary(await timed(through_kernel, calls))

        async def kernel_ttft() -> object:
            stream = kernel.astream(model="bench/gpt-4o-mini", messages=MESSAGES)
            async for _ in stream:
                break
            await stream.aclose()
            return None

        ttft_kernel = summary(await timed(kernel_ttft, calls // 4))

    try:
        import litellm
    except ImportError:
        litellm = None
    if litellm is not None:

        async def through_litellm() -> object:
            response = await litellm.acompletion(
                model="openai/gpt-4o-mini", messages=MESSAGES, api_base=base, api_key="x"
            )
            return response.choices[0].message.content

        results["litellm acompletion"] = summary(await timed(through_litellm, calls))

    bare_median = results["bare httpx"][0]
    print(f"{'client':<22} {'median ms':>10} {'p99 ms':>8} {'x bare':>7}")
    for name, (median, p99) in results.items():
        print(f"{name:<22} {median * 1000:10.3f} {p99 * 1000:8.3f} {median / bare_median:7.2f}")
    if litellm is None:
        print("litellm: not installed (pip install litellm to measure it)")
    print(
        f"time to first chunk: bare {ttft_bare[0] * 1000:.3f} ms, "
        f"llmkernel {ttft_kernel[0] * 1000:.3f} ms "
        f"(+{(ttft_kernel[0] - ttft_bare[0]) * 1000:.3f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
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
