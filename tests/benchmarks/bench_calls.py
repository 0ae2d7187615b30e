"""Per-call overhead (sync and async), streaming, concurrency: the kernel against bare
clients and LiteLLM on the same fake upstream, interleaved.

    python tests/benchmarks/bench_calls.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from common import (
    MODEL,
    full_kernel,
    interleave_async,
    interleave_sync,
    median,
    minimal_kernel,
    paired,
    pct,
    upstream,
)

try:
    import litellm
except ImportError:  # measured when installed (the nox session installs it)
    litellm = None
else:
    litellm.telemetry = False
    litellm.suppress_debug_info = True


#: a second bare httpx client, identical to the baseline: what the machine's noise
#: alone adds to a client's p99 (the paired differences of two equal clients)
CONTROL = "bare httpx, second client"
#: the full stack with the ledger's ``durability = "fast"``: what the durable
#: default's wait for the commit costs, in the same run
FULL_FAST = "kernel full, ledger fast"


def _messages(i: int) -> list[dict[str, str]]:
    # a new text every round: the full stack's cache always misses
    return [{"role": "user", "content": f"Say hello. {i}"}]


def _summary(times: dict[str, list[float]], base: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    bare = times[base]
    for name, samples in times.items():
        diff = paired(samples, bare)
        out[name] = {
            "median_us": median(samples) * 1e6,
            "p99_us": pct(samples, 0.99) * 1e6,
            "ratio": median(samples) / median(bare),
            "added_median_us": median(diff) * 1e6,
            "added_p99_us": pct(diff, 0.99) * 1e6,
        }
    return out


def per_call_sync(base: str, rounds: int, tmp: Path) -> dict[str, Any]:
    counter = itertools.count()
    fresh = itertools.count(10**6)  # the full stack's own texts: its cache always misses
    body = {"model": MODEL, "messages": []}
    minimal, full = minimal_kernel(base), full_kernel(base, tmp)
    fast = full_kernel(base, tmp / "fast", durability="fast")
    client = httpx.Client(base_url=base, headers={"authorization": "Bearer sk-bench"})
    state = {"i": 0}

    def bare() -> object:
        response = client.post(
            "/chat/completions", json={**body, "messages": _messages(state["i"])}
        )
        return response.json()["choices"][0]["message"]["content"]

    def kmin() -> object:
        return minimal.chat(model=f"bench/{MODEL}", messages=_messages(state["i"])).text

    def kfull() -> object:
        return full.chat(model="fast", messages=_messages(next(fresh))).text

    def kfast() -> object:
        return fast.chat(model="fast", messages=_messages(next(fresh))).text

    control = httpx.Client(base_url=base, headers={"authorization": "Bearer sk-bench"})

    def bare_again() -> object:
        # the same request on a second, identical client: its added p99 is the noise
        # of the machine, the floor under every other client's added p99
        response = control.post(
            "/chat/completions", json={**body, "messages": _messages(state["i"])}
        )
        return response.json()["choices"][0]["message"]["content"]

    calls: dict[str, Any] = {
        "bare httpx": bare,
        CONTROL: bare_again,
        "kernel minimal": kmin,
        "kernel full": kfull,
        FULL_FAST: kfast,
    }
    try:
        import openai

        sdk = openai.OpenAI(base_url=base, api_key="sk-bench", max_retries=0)
        calls["openai SDK"] = lambda: sdk.chat.completions.create(
            model=MODEL,
            messages=_messages(state["i"]),  # type: ignore[arg-type]
        )
    except ImportError:
        pass
    if litellm is not None:
        calls["litellm.completion"] = lambda: litellm.completion(
            model=f"openai/{MODEL}", messages=_messages(state["i"]), api_base=base, api_key="x"
        )

    def bare_counted() -> object:
        state["i"] = next(counter)  # a new text every round (order is shuffled)
        return bare()

    calls["bare httpx"] = bare_counted
    try:
        times = interleave_sync(calls, rounds, warmup=min(100, rounds // 4))
    finally:
        client.close()
        control.close()
        minimal.close()
        full.close()
        fast.close()
    return _summary(times, "bare httpx")


async def per_call_async(base: str, rounds: int, tmp: Path) -> dict[str, Any]:
    counter = itertools.count()
    fresh = itertools.count(10**6)  # the full stack's own texts: its cache always misses
    state = {"i": 0}
    minimal, full = minimal_kernel(base), full_kernel(base, tmp)
    fast = full_kernel(base, tmp / "fast", durability="fast")
    client = httpx.AsyncClient(base_url=base, headers={"authorization": "Bearer sk-bench"})

    async def bare() -> object:
        state["i"] = next(counter)
        response = await client.post(
            "/chat/completions", json={"model": MODEL, "messages": _messages(state["i"])}
        )
        return response.json()["choices"][0]["message"]["content"]

    async def kmin() -> object:
        return (await minimal.achat(model=f"bench/{MODEL}", messages=_messages(state["i"]))).text

    async def kfull() -> object:
        return (await full.achat(model="fast", messages=_messages(next(fresh)))).text

    async def kfast() -> object:
        return (await fast.achat(model="fast", messages=_messages(next(fresh)))).text

    from llmkernel_http.aiohttp_transport import AiohttpTransport

    ours = httpx.AsyncClient(
        base_url=base, headers={"authorization": "Bearer sk-bench"}, transport=AiohttpTransport()
    )

    async def bare_ours() -> object:
        response = await ours.post(
            "/chat/completions", json={"model": MODEL, "messages": _messages(state["i"])}
        )
        return response.json()["choices"][0]["message"]["content"]

    control = httpx.AsyncClient(base_url=base, headers={"authorization": "Bearer sk-bench"})

    async def bare_again() -> object:
        response = await control.post(
            "/chat/completions", json={"model": MODEL, "messages": _messages(state["i"])}
        )
        return response.json()["choices"][0]["message"]["content"]

    calls: dict[str, Any] = {
        "bare httpx": bare,
        CONTROL: bare_again,
        "httpx over llmkernel AiohttpTransport": bare_ours,
        "kernel minimal": kmin,
        "kernel full": kfull,
        FULL_FAST: kfast,
    }
    sdk = None
    try:
        import openai

        sdk = openai.AsyncOpenAI(base_url=base, api_key="sk-bench", max_retries=0)
        calls["openai SDK"] = lambda: sdk.chat.completions.create(  # type: ignore[union-attr]
            model=MODEL,
            messages=_messages(state["i"]),  # type: ignore[arg-type]
        )
    except ImportError:
        pass
    if litellm is not None:
        calls["litellm.acompletion"] = lambda: litellm.acompletion(
            model=f"openai/{MODEL}", messages=_messages(state["i"]), api_base=base, api_key="x"
        )
    try:
        times = await interleave_async(calls, rounds, warmup=min(100, rounds // 4))
    finally:
        await client.aclose()
        await control.aclose()
        await ours.aclose()
        await minimal.aclose()
        await full.aclose()
        await fast.aclose()
        if sdk is not None:
            await sdk.close()
    return _summary(times, "bare httpx")


async def streaming(base: str, rounds: int) -> dict[str, Any]:
    """Time to the first text and to the end of the stream: bare httpx reading the SSE
    lines and decoding each chunk's JSON, against ``Kernel.astream`` (minimal stack)."""
    kernel = minimal_kernel(base)
    client = httpx.AsyncClient(base_url=base, headers={"authorization": "Bearer sk-bench"})
    body = {"model": MODEL, "messages": _messages(0), "stream": True}
    first: dict[str, list[float]] = {"bare httpx": [], "kernel": []}
    total: dict[str, list[float]] = {"bare httpx": [], "kernel": []}
    chunks = {"n": 0}

    async def bare() -> None:
        started = time.perf_counter()
        seen = 0
        async with client.stream("POST", "/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                choices = chunk["choices"]
                if choices and choices[0]["delta"].get("content"):
                    if not seen:
                        first["bare httpx"].append(time.perf_counter() - started)
                    seen += 1
        chunks["n"] = seen
        total["bare httpx"].append(time.perf_counter() - started)

    async def through_kernel() -> None:
        started = time.perf_counter()
        seen = 0
        async for event in kernel.astream(model=f"bench/{MODEL}", messages=_messages(0)):
            if getattr(event, "text", None):
                if not seen:
                    first["kernel"].append(time.perf_counter() - started)
                seen += 1
        total["kernel"].append(time.perf_counter() - started)

    try:
        for _ in range(min(50, rounds)):
            await bare()
            await through_kernel()
        for series in (*first.values(), *total.values()):
            series.clear()
        for _ in range(rounds):
            await bare()
            await through_kernel()
    finally:
        await client.aclose()
        await kernel.aclose()
    ttft_diff = paired(first["kernel"], first["bare httpx"])
    total_diff = paired(total["kernel"], total["bare httpx"])
    n = max(1, chunks["n"])
    return {
        "chunks": n,
        "ttft_bare_us": median(first["bare httpx"]) * 1e6,
        "ttft_kernel_us": median(first["kernel"]) * 1e6,
        "ttft_ratio": median(first["kernel"]) / median(first["bare httpx"]),
        "ttft_added_us": median(ttft_diff) * 1e6,
        "total_bare_us": median(total["bare httpx"]) * 1e6,
        "total_kernel_us": median(total["kernel"]) * 1e6,
        "per_chunk_us": (median(total_diff) - median(ttft_diff)) / max(1, n - 1) * 1e6,
    }


async def _drive(call: Any, callers: int, seconds: float) -> float:
    """Requests/s of ``call`` with ``callers`` concurrent loops for ``seconds``."""
    done = 0
    stop_at = 0.0

    async def loop() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await call()
            done += 1

    # warm the pools to this many connections first
    await asyncio.gather(*(call() for _ in range(callers)))
    stop_at = time.perf_counter() + seconds
    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(callers)))
    return done / (time.perf_counter() - started)


async def concurrency(
    base: str, levels: list[int], seconds: float, reps: int, tmp: Path
) -> dict[str, Any]:
    import aiohttp

    url = f"{base}/chat/completions"
    payload = {"model": MODEL, "messages": _messages(0)}
    headers = {"authorization": "Bearer sk-bench"}
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512), headers=headers)
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    hx = httpx.AsyncClient(headers=headers, limits=limits)
    hx_aio = None
    try:
        from httpx_aiohttp import AiohttpTransport

        hx_aio = httpx.AsyncClient(
            headers=headers,
            transport=AiohttpTransport(
                client=lambda: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512))
            ),
        )
    except ImportError:
        pass
    from llmkernel_http.aiohttp_transport import AiohttpTransport as OurTransport

    hx_ours = httpx.AsyncClient(headers=headers, transport=OurTransport())
    minimal, full = minimal_kernel(base), full_kernel(base, tmp)
    counter = itertools.count(10**6)  # the full stack's own texts: its cache always misses

    async def httpx_ours() -> object:
        return (await hx_ours.post(url, json=payload)).json()["choices"][0]["message"]["content"]

    async def bare_aiohttp() -> object:
        async with session.post(url, json=payload) as response:
            return (await response.json())["choices"][0]["message"]["content"]

    async def bare_httpx() -> object:
        return (await hx.post(url, json=payload)).json()["choices"][0]["message"]["content"]

    async def httpx_aiohttp() -> object:
        assert hx_aio is not None
        return (await hx_aio.post(url, json=payload)).json()["choices"][0]["message"]["content"]

    async def kmin() -> object:
        return (await minimal.achat(model=f"bench/{MODEL}", messages=_messages(0))).text

    async def kfull() -> object:
        return (await full.achat(model="fast", messages=_messages(next(counter)))).text

    calls: dict[str, Any] = {"bare aiohttp": bare_aiohttp, "bare httpx": bare_httpx}
    if hx_aio is not None:
        calls["httpx over aiohttp"] = httpx_aiohttp
    calls["httpx over llmkernel AiohttpTransport"] = httpx_ours
    calls["kernel minimal"] = kmin
    calls["kernel full"] = kfull
    if litellm is not None:
        calls["litellm.acompletion"] = lambda: litellm.acompletion(
            model=f"openai/{MODEL}", messages=_messages(0), api_base=base, api_key="x"
        )
    results: dict[str, dict[int, list[float]]] = {n: {c: [] for c in levels} for n in calls}
    try:
        for _ in range(reps):
            for callers in levels:
                for name, call in calls.items():
                    results[name][callers].append(await _drive(call, callers, seconds))
    finally:
        await session.close()
        await hx.aclose()
        if hx_aio is not None:
            await hx_aio.aclose()
        await hx_ours.aclose()
        await minimal.aclose()
        await full.aclose()
    return {
        name: {str(c): {"rps": median(v), "runs": v} for c, v in per.items()}
        for name, per in results.items()
    }


PARTS = ("per_call_sync", "per_call_async", "streaming", "concurrency")


def run(quick: bool, only: tuple[str, ...] = PARTS) -> dict[str, Any]:
    rounds = 300 if quick else 1000
    out: dict[str, Any] = {}
    with upstream() as base, tempfile.TemporaryDirectory(prefix="llmkernel-bench-") as tmp:
        if "per_call_sync" in only:
            out["per_call_sync"] = per_call_sync(base, rounds, Path(tmp) / "sync")
        if "per_call_async" in only:
            out["per_call_async"] = asyncio.run(per_call_async(base, rounds, Path(tmp) / "async"))
        if "streaming" in only:
            out["streaming"] = asyncio.run(streaming(base, 150 if quick else 600))
        if "concurrency" in only:
            out["concurrency"] = asyncio.run(
                concurrency(
                    base,
                    [1, 50, 200],
                    0.6 if quick else 1.0,
                    2 if quick else 3,
                    Path(tmp) / "conc",
                )
            )
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", help=f"comma-separated parts of {','.join(PARTS)}")
    args = parser.parse_args()
    only = tuple(args.only.split(",")) if args.only else PARTS
    print(json.dumps(run(args.quick, only), indent=1))
