"""Two processes on one cache file at once: every write kept, counts exact."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from llmkernel import Kernel
    from llmkernel.types import Message, Response, TextPart, Usage
    from llmkernel_cache.cache import ResponseCache
    from llmkernel_cache.settings import CacheSettings

    path, name, shared, own = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    kernel = Kernel.from_config({}, entry_points=False)

    def request(text):
        return kernel.build_request("a/m1", text)

    def answer(text):
        return Response(message=Message(role="assistant", content=(TextPart(text=text),)),
                        usage=Usage(input_tokens=1, output_tokens=1))

    async def main():
        cache = ResponseCache(CacheSettings(enabled=True, path=path, memory_entries=0))
        for i in range(own):
            await cache.store(request(f"{name} {i}"), answer(f"{name} {i}"))
        await cache.aflush()
        found = 0
        for i in range(shared):
            hit = await cache.lookup(request(f"shared {i}"))
            found += hit is not None and hit.text == f"shared {i}"
        for i in range(own):
            hit = await cache.lookup(request(f"{name} {i}"))
            found += hit is not None and hit.text == f"{name} {i}"
        for i in range(own):
            await cache.lookup(request(f"missing {name} {i}"))
        stats = cache.stats()
        await cache.aclose()
        print(json.dumps({"found": found, "hits": stats["hits"], "misses": stats["misses"]}))

    asyncio.run(main())
    """
)


def test_two_processes_share_one_file(tmp_path: Path) -> None:
    import asyncio

    from llmkernel import Kernel
    from llmkernel.types import Message, Response, TextPart
    from llmkernel_cache.cache import ResponseCache
    from llmkernel_cache.settings import CacheSettings
    from llmkernel_cache.store import SQLiteStore

    path = str(tmp_path / "cache.db")
    shared, own = 20, 40
    kernel = Kernel.from_config({}, entry_points=False)

    async def warm() -> None:
        cache = ResponseCache(CacheSettings(enabled=True, path=path))
        for i in range(shared):
            text = f"shared {i}"
            await cache.store(
                kernel.build_request("a/m1", text),
                Response(message=Message(role="assistant", content=(TextPart(text=text),))),
            )
        await cache.aclose()

    asyncio.run(warm())
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), path, name, str(shared), str(own)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("p1", "p2")
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    for result in results:
        assert result == {"found": shared + own, "hits": shared + own, "misses": own}
    store = SQLiteStore(path, max_entries=10**6, max_bytes=10**12)
    assert store.totals().entries == shared + 2 * own
    assert {k: v.entries for k, v in store.namespaces().items()} == {"default": shared + 2 * own}
    store.close()
