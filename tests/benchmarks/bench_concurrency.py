"""Requests per second at N concurrent callers against a local fake OpenAI upstream.

    uv run python tests/benchmarks/bench_concurrency.py [--calls 3000] [--concurrency 50]
    uv run --with httpx-aiohttp --with litellm python tests/benchmarks/bench_concurrency.py

Every client makes the same non-streaming chat completion against ``upstream.py``
(its own process), ``--concurrency`` callers at a time, ``--calls`` calls a pass;
passes alternate between clients and the median pass is reported. Measured: bare
aiohttp, httpx over llmkernel's aiohttp transport, httpx over ``httpx-aiohttp`` (when
installed), bare httpx, ``Kernel.achat`` on its default transport and on httpx's own
pool, and LiteLLM's ``acompletion`` (when installed). Then the sync path: one caller,
``Kernel.chat`` against a bare ``httpx.Client`` POST, interleaved call by call.
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
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx

from llmkernel import Kernel

try:
    from llmkernel_http.aiohttp_transport import AiohttpTransport
except ImportError:  # an older checkout, measured for a "before" figure
    AiohttpTransport = None  # type: ignore[assignment,misc]

HERE = Path(__file__).parent
MESSAGES = [{"role": "user", "content": "Say hello."}]
BODY = {"model": "gpt-4o-mini", "messages": MESSAGES}
EXPECTED = "Hello from the benchmark."

Call = Callable[[], Awaitable[str]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def rate(call: Call, calls: int, concurrency: int) -> float:
    """Requests per second for ``calls`` calls made by ``concurrency`` workers."""
    left = calls

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            if await call() != EXPECTED:
                raise AssertionError("wrong answer")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return calls / (time.perf_counter() - started)


def kernel_for(base: str, http_client: str | None) -> Kernel:
    options = {"type": "openai", "base_url": base, "api_key_env": "BENCH_KEY"}
    if http_client is not None:
        options["http_client"] = http_client
    return Kernel.from_config({"providers": {"bench": options}})


async def run_async(base: str, calls: int, concurrency: int, passes: int) -> dict[str, float]:
    import aiohttp

    clients: dict[str, Call] = {}
    async with AsyncExitStack() as stack:
        headers = {"authorization": "Bearer x"}
        session = await stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512))
        )

        async def bare_aiohttp() -> str:
            async with session.post(f"{base}/chat/completions", json=BODY, headers=headers) as r:
                data = await r.json()
            return str(data["choices"][0]["message"]["content"])

        clients["bare aiohttp"] = bare_aiohttp

        def httpx_call(client: httpx.AsyncClient) -> Call:
            async def call() -> str:
                response = await client.post("/chat/completions", json=BODY)
                return str(response.json()["choices"][0]["message"]["content"])

            return call

        if AiohttpTransport is not None:
            ours = await stack.enter_async_context(
                httpx.AsyncClient(base_url=base, headers=headers, transport=AiohttpTransport())
            )
            clients["httpx over llmkernel AiohttpTransport"] = httpx_call(ours)
        try:
            import httpx_aiohttp
        except ImportError:
            print("httpx-aiohttp: not installed (uv run --with httpx-aiohttp ...)")
        else:
            theirs = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=base, headers=headers, transport=httpx_aiohttp.AiohttpTransport()
                )
            )
            clients["httpx over httpx-aiohttp"] = httpx_call(theirs)
        bare = await stack.enter_async_context(
            httpx.AsyncClient(
                base_url=base,
                headers=headers,
                limits=httpx.Limits(max_connections=512, max_keepalive_connections=128),
            )
        )
        clients["bare httpx"] = httpx_call(bare)
        variants: tuple[tuple[str, str | None], ...] = (
            (("aiohttp", "aiohttp"), ("httpx pool", "httpx"))
            if AiohttpTransport is not None
            else (("this checkout", None),)
        )
        for label, http_client in variants:
            kernel = await stack.enter_async_context(kernel_for(base, http_client))

            def kernel_call(kernel: Kernel = kernel) -> Call:
                async def call() -> str:
                    response = await kernel.achat(model="bench/gpt-4o-mini", messages=MESSAGES)
                    return response.text

                return call

            clients[f"Kernel.achat ({label})"] = kernel_call()
        try:
            import litellm
        except ImportError:
            print("litellm: not installed (uv run --with litellm ...)")
        else:

            async def through_litellm() -> str:
                response: Any = await litellm.acompletion(
                    model="openai/gpt-4o-mini", messages=MESSAGES, api_base=base, api_key="x"
                )
                return str(response.choices[0].message.content)

            clients["litellm acompletion"] = through_litellm

        for call in clients.values():  # warm up: connections, imports, caches
            await rate(call, min(200, calls), concurrency)
        results: dict[str, list[float]] = {name: [] for name in clients}
        for _ in range(passes):
            for name, call in clients.items():
                results[name].append(await rate(call, calls, concurrency))
    return {name: statistics.median(values) for name, values in results.items()}


def run_sync(base: str, rounds: int) -> tuple[float, float]:
    """Median seconds per call: bare ``httpx.Client`` POST and ``Kernel.chat``."""
    bare_times: list[float] = []
    kernel_times: list[float] = []
    with (
        httpx.Client(base_url=base, headers={"authorization": "Bearer x"}) as client,
        kernel_for(base, "aiohttp" if AiohttpTransport is not None else None) as kernel,
    ):
        for i in range(rounds + 200):
            started = time.perf_counter()
            client.post("/chat/completions", json=BODY).json()
            middle = time.perf_counter()
            kernel.chat(model="bench/gpt-4o-mini", messages=MESSAGES)
            ended = time.perf_counter()
            if i >= 200:
                bare_times.append(middle - started)
                kernel_times.append(ended - middle)
    return statistics.median(bare_times), statistics.median(kernel_times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000, help="calls per pass and client")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--sync-calls", type=int, default=1000)
    args = parser.parse_args()
    os.environ.setdefault("BENCH_KEY", "sk-bench")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network here
    port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(HERE / "upstream.py"), str(port)], stdout=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        assert upstream.stdout is not None and upstream.stdout.readline().strip() == "ready"
        rates = asyncio.run(run_async(base, args.calls, args.concurrency, args.passes))
        floor = (
            rates.get("httpx over httpx-aiohttp") or rates["httpx over llmkernel AiohttpTransport"]
        )
        print(f"\n{args.concurrency} concurrent callers, {args.calls} calls a pass, median pass")
        print(f"{'client':<40} {'requests/s':>10} {'x floor':>8}")
        for name, value in sorted(rates.items(), key=lambda item: -item[1]):
            print(f"{name:<40} {value:10.0f} {value / floor:8.2f}")
        if "litellm acompletion" in rates and "Kernel.achat (aiohttp)" in rates:
            ours = rates["Kernel.achat (aiohttp)"] / rates["litellm acompletion"]
            print(f"Kernel.achat / litellm acompletion: {ours:.1f}x")
        if args.sync_calls:
            bare, kernel = run_sync(base, args.sync_calls)
            print(
                f"\nsync, one caller: bare httpx.Client {bare * 1e3:.3f} ms, Kernel.chat "
                f"{kernel * 1e3:.3f} ms ({kernel / bare:.2f}x, +{(kernel - bare) * 1e6:.0f} us)"
            )
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)


if __name__ == "__main__":
    main()
