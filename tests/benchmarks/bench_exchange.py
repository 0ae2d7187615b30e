"""The whole-body exchange alone (what ``HTTPProvider.send_json`` sends), and the
response parsers alone: how issue 27's choice of parser was measured.

    python tests/benchmarks/bench_exchange.py [--quick] [--old PATH]

Against the fake upstream (``upstream.py``), interleaved, one POST of the
benchmark's chat body each:

* bare ``httpx.AsyncClient`` (httpx's own pool: the suite's baseline);
* bare ``aiohttp.ClientSession`` (``post`` + ``read``: moving the exchange onto
  aiohttp's client);
* the kernel's ``ConnectionPool`` (asyncio protocols, answers parsed by llhttp
  through httptools);
* with ``--old PATH``, another ``connections.py`` (the hand-written parser before
  issue 27, from git) loaded from that file, for a before/after in one run.

Then the same at 50 concurrent callers (requests/s), and the parsers alone on the
upstream's exact answer bytes: httptools (the pool's ``_Answer``) and h11 (httpx's).
Prints JSON; ratios are against bare httpx (per call) in the same run.

``--callgrind`` counts instead of timing: the user-space instructions of one
exchange (the difference between 1,300 and 300 exchanges in fresh processes under
``valgrind --tool=callgrind``) for the pool, the ``--old`` one and aiohttp's client.
Slow (minutes), but immune to a shared machine's noise.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

from common import interleave_async, median, pct, upstream

BODY = json.dumps(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello."}]}
).encode()
HEADERS = [("authorization", "Bearer sk-bench"), ("content-type", "application/json")]
TIMEOUTS = {"connect": 10.0, "read": 30.0, "write": 30.0, "pool": 10.0}


def load(path: str) -> Any:
    spec = importlib.util.spec_from_file_location("old_connections", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def no_tls() -> bool:
    raise AssertionError("http only")


async def calls(base: str, old: str | None) -> dict[str, Any]:
    import aiohttp
    import httpx

    from llmkernel_http.connections import ConnectionPool

    url = f"{base}/chat/completions"
    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=512))
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=512), auto_decompress=False
    )
    pools = {"kernel's connections (httptools)": ConnectionPool(ssl_context=no_tls)}
    if old:
        pools["kernel's connections (hand-written, before)"] = load(old).ConnectionPool(
            ssl_context=no_tls
        )

    async def bare_httpx() -> None:
        response = await client.post(url, content=BODY, headers=dict(HEADERS))
        assert response.status_code == 200

    async def bare_aiohttp() -> None:
        async with session.post(url, data=BODY, headers=dict(HEADERS)) as response:
            await response.read()
            assert response.status == 200

    def exchanging(pool: Any) -> Any:
        async def call() -> None:
            status, _, _, body = await pool.exchange("POST", url, HEADERS, BODY, TIMEOUTS)
            assert status == 200 and body

        return call

    clients = {"bare httpx": bare_httpx, "bare aiohttp": bare_aiohttp}
    clients.update({name: exchanging(pool) for name, pool in pools.items()})
    quick = QUICK
    times = await interleave_async(clients, rounds=600 if quick else 3000, warmup=50)
    floor = median(times["bare httpx"])
    per_call = {
        name: {
            "median_us": median(t) * 1e6,
            "p99_us": pct(t, 0.99) * 1e6,
            "x_bare_httpx": median(t) / floor,
        }
        for name, t in times.items()
    }
    rates: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(3 if quick else 5):  # alternating rounds of 50 concurrent callers
        for name, call in clients.items():
            rates[name].append(await rate(call, 50, 1.0 if quick else 2.0))
    await client.aclose()
    await session.close()
    for pool in pools.values():
        pool.close()
    return {
        "per_call": per_call,
        "requests_per_s_50_callers": {name: median(r) for name, r in rates.items()},
    }


async def rate(call: Any, callers: int, seconds: float) -> float:
    done = 0
    stop = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await call()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return done / (time.perf_counter() - started)


def parsers() -> dict[str, float]:
    """µs to parse the upstream's answer (head and body) once."""
    import h11
    from upstream import COMPLETION

    from llmkernel_http.connections import _Answer

    wire = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(COMPLETION)).encode()
        + b"\r\ndate: Mon, 07 Dec 2026 12:00:00 GMT\r\nx-request-id: req_123\r\n"
        b"openai-processing-ms: 120\r\nx-ratelimit-remaining-requests: 9999\r\n\r\n" + COMPLETION
    )

    def with_httptools() -> None:
        answer = _Answer(1 << 26, False)
        answer.feed(wire)
        assert answer.complete

    request = h11.Request(method="POST", target="/v1/chat", headers=[("host", "x")])

    def with_h11() -> None:
        conn = h11.Connection(h11.CLIENT)
        conn.send(request)
        conn.receive_data(wire)
        while not isinstance(conn.next_event(), h11.EndOfMessage):
            pass

    out = {}
    for name, parse in (("httptools", with_httptools), ("h11", with_h11)):
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(2000):
                parse()
            best = min(best, (time.perf_counter() - started) / 2000)
        out[name] = best * 1e6
    return out


QUICK = False

CALLGRIND_CLIENT = """
import asyncio, sys
sys.path.insert(0, {here!r})
import bench_exchange as b
which, url, n = sys.argv[1], sys.argv[2] + "/chat/completions", int(sys.argv[3])

async def main():
    if which == "aiohttp":
        import aiohttp
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            for _ in range(n):
                async with session.post(url, data=b.BODY, headers=dict(b.HEADERS)) as r:
                    await r.read()
        return
    if which == "pool":
        from llmkernel_http.connections import ConnectionPool
    else:
        ConnectionPool = b.load(which).ConnectionPool
    pool = ConnectionPool(ssl_context=b.no_tls)
    for _ in range(n):
        await pool.exchange("POST", url, b.HEADERS, b.BODY, b.TIMEOUTS)
    pool.close()

asyncio.run(main())
"""


def instructions(base: str, old: str | None) -> dict[str, float]:
    """Thousands of user-space instructions an exchange, by callgrind."""
    import re
    import shutil
    import subprocess

    if shutil.which("valgrind") is None:
        return {}
    script = CALLGRIND_CLIENT.format(here=str(Path(__file__).parent))

    def count(which: str, n: int) -> int:
        valgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
        done = subprocess.run(
            [*valgrind, sys.executable, "-c", script, which, base, str(n)],
            capture_output=True,
            text=True,
            check=True,
        )
        found = re.search(r"Collected : (\d+)", done.stderr)
        assert found, done.stderr[-2000:]
        return int(found.group(1))

    names = {"pool": "kernel's connections (httptools)", "aiohttp": "bare aiohttp"}
    if old:
        names[old] = "kernel's connections (hand-written, before)"
    return {
        name: (count(which, 1300) - count(which, 300)) / 1000 / 1000
        for which, name in names.items()
    }


def main() -> None:
    global QUICK
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--old", help="a connections.py to compare with (e.g. from git)")
    parser.add_argument("--callgrind", action="store_true", help="count instructions")
    args = parser.parse_args()
    QUICK = args.quick
    sys.path.insert(0, str(Path(__file__).parent))
    with upstream() as base:
        if args.callgrind:
            result: dict[str, Any] = {"k_instructions_an_exchange": instructions(base, args.old)}
            print(json.dumps(result, indent=2))
            return
        result = asyncio.run(calls(base, args.old))
    result["parse_us"] = parsers()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
