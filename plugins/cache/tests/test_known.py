"""A memory miss settles without a thread hop when the key is certainly not in
SQLite; answers other connections (other processes) store are found within
``key_refresh`` seconds; a stale view asks SQLite, never answers wrong."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llmkernel import Kernel
from llmkernel.types import ChatRequest, Message, Response, TextPart, Usage
from llmkernel_cache.cache import ResponseCache
from llmkernel_cache.known import KeyFilter
from llmkernel_cache.settings import CacheSettings
from llmkernel_cache.store import SQLiteStore

KERNEL = Kernel.from_config({}, entry_points=False)
REFRESH = 1.0


def request(text: str) -> ChatRequest:
    return KERNEL.build_request("a/m1", text)


def answer(text: str) -> Response:
    return Response(
        message=Message(role="assistant", content=(TextPart(text=text),)),
        usage=Usage(input_tokens=1, output_tokens=1),
    )


class Timer:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def cache_on(path: Path, timer: Timer, **settings: object) -> ResponseCache:
    table: dict[str, object] = {
        "enabled": True,
        "path": str(path),
        "memory_entries": 0,  # every lookup past memory: what SQLite holds matters
        "key_refresh": REFRESH,
        **settings,
    }
    return ResponseCache(CacheSettings(**table), timer=timer)  # type: ignore[arg-type]


def test_the_filter_never_forgets_a_key_and_rarely_claims_one() -> None:
    known = KeyFilter(10_000)
    added = [hashlib.sha256(f"in {i}".encode()).hexdigest() for i in range(10_000)]
    known.update(added)
    assert all(key in known for key in added)
    others = [hashlib.sha256(f"out {i}".encode()).hexdigest() for i in range(20_000)]
    false_positives = sum(key in known for key in others)
    assert false_positives < 0.01 * len(others)
    # keys that are not hex digests (another store's) work too
    known.add("plain key")
    assert "plain key" in known and not known.full
    known.update(others)
    assert known.full  # past twice its size: the cache rebuilds it


async def test_a_miss_after_the_first_scan_does_not_ask_sqlite(tmp_path: Path) -> None:
    timer = Timer()
    cache = cache_on(tmp_path / "c.db", timer)
    await cache.store(request("stored"), answer("stored"))
    assert await cache.lookup(request("absent")) is None  # no view yet: asks SQLite
    await cache.aflush()  # the first scan has run
    for i in range(5):
        assert await cache.lookup(request(f"absent {i}")) is None
    assert cache.stats()["misses_in_memory"] == 5
    hit = await cache.lookup(request("stored"))  # its own key: asked, found
    assert hit is not None and hit.text == "stored"
    await cache.aclose()


async def test_an_answer_this_process_queued_is_found_before_it_is_written(
    tmp_path: Path,
) -> None:
    timer = Timer()
    cache = cache_on(tmp_path / "c.db", timer)
    await cache.lookup(request("warm"))
    await cache.aflush()
    for i in range(20):  # no flush between: the writes may still be queued
        await cache.store(request(f"q{i}"), answer(f"a{i}"))
        hit = await cache.lookup(request(f"q{i}"))
        assert hit is not None and hit.text == f"a{i}"
    await cache.aclose()


async def test_another_connection_s_answer_is_found_within_key_refresh(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    timer = Timer()
    cache = cache_on(path, timer)
    other = ResponseCache(CacheSettings(enabled=True, path=str(path)))  # its own connection
    assert await cache.lookup(request("later")) is None
    await cache.aflush()
    assert await cache.lookup(request("later")) is None
    assert cache.stats()["misses_in_memory"] == 1

    await other.store(request("later"), answer("from the other"))
    await other.aflush()
    # the view is younger than key_refresh / 2 and predates the other's write: a
    # miss at worst, settled in memory (a lost hit, never a wrong answer)
    timer.now += REFRESH * 0.25
    assert await cache.lookup(request("later")) is None
    # older than half key_refresh: a refresh runs in the background
    timer.now += REFRESH * 0.5
    await cache.lookup(request("later"))
    await cache.aflush()
    hit = await cache.lookup(request("later"))
    assert hit is not None and hit.text == "from the other"

    # idle past key_refresh: the next lookup asks SQLite itself
    await other.store(request("while idle"), answer("idle"))
    await other.aflush()
    timer.now += REFRESH * 1.01
    hit = await cache.lookup(request("while idle"))
    assert hit is not None and hit.text == "idle"
    await other.aclose()
    await cache.aclose()


async def test_reused_rowids_after_deletes_are_rescanned(tmp_path: Path) -> None:
    """SQLite gives a new row the largest rowid plus one: after the last rows are
    deleted, new keys can take old rowids. The scan notices and reads every key."""
    path = tmp_path / "c.db"
    timer = Timer()
    cache = cache_on(path, timer)
    other = ResponseCache(CacheSettings(enabled=True, path=str(path)))
    for i in range(3):
        await other.store(request(f"old {i}"), answer(f"old {i}"))
    await other.aflush()
    await cache.lookup(request("warm"))
    await cache.aflush()
    assert await cache.lookup(request("old 2")) is not None
    assert await other.aclear() == 3
    await other.store(request("new"), answer("new"))  # rowid 1 again
    await other.aflush()
    timer.now += REFRESH * 0.75
    await cache.lookup(request("new"))
    await cache.aflush()
    hit = await cache.lookup(request("new"))
    assert hit is not None and hit.text == "new"
    assert await cache.lookup(request("old 2")) is None  # gone: asked or not, a miss
    await other.aclose()
    await cache.aclose()


async def test_key_refresh_zero_always_asks_sqlite(tmp_path: Path) -> None:
    timer = Timer()
    cache = cache_on(tmp_path / "c.db", timer, key_refresh=0)
    other = ResponseCache(CacheSettings(enabled=True, path=str(tmp_path / "c.db")))
    assert await cache.lookup(request("x")) is None
    await cache.aflush()
    await other.store(request("x"), answer("x"))
    await other.aflush()
    hit = await cache.lookup(request("x"))
    assert hit is not None and cache.stats()["misses_in_memory"] == 0
    await other.aclose()
    await cache.aclose()


async def test_a_store_without_key_scans_is_always_asked(tmp_path: Path) -> None:
    """A third-party store (no ``scan_keys``) keeps the old behaviour."""

    class Plain:
        def __init__(self, inner: SQLiteStore) -> None:
            self.inner = inner

        def get(self, namespace: str, key: str, now: float) -> object:
            return self.inner.get(namespace, key, now)

        def put(self, entry: object) -> None:
            self.inner.put(entry)  # type: ignore[arg-type]

        def delete(self, namespace: str, key: str) -> bool:
            return self.inner.delete(namespace, key)

        def clear(self, namespace: str | None = None) -> int:
            return self.inner.clear(namespace)

        def totals(self) -> object:
            return self.inner.totals()

        def namespaces(self) -> object:
            return self.inner.namespaces()

        def close(self) -> None:
            self.inner.close()

    inner = SQLiteStore(str(tmp_path / "p.db"), max_entries=100, max_bytes=10**9)
    cache = ResponseCache(
        CacheSettings(enabled=True, path="", memory_entries=0),
        store=Plain(inner),  # type: ignore[arg-type]
    )
    for _ in range(3):
        assert await cache.lookup(request("nothing")) is None
    await cache.store(request("kept"), answer("kept"))
    await cache.aflush()
    assert (await cache.lookup(request("kept"))) is not None
    assert cache.stats()["misses_in_memory"] == 0
    await cache.aclose()
    inner.close()


WORKER = textwrap.dedent(
    """
    import sys
    from llmkernel import Kernel
    from llmkernel.types import Message, Response, TextPart
    from llmkernel_cache.store import Entry, SQLiteStore
    from llmkernel_cache.cache import ResponseCache
    from llmkernel_cache.settings import CacheSettings

    path, text = sys.argv[1], sys.argv[2]
    cache = ResponseCache(CacheSettings(enabled=True, path=path))
    request = Kernel.from_config({}, entry_points=False).build_request("a/m1", text)
    import asyncio

    async def main():
        await cache.store(request, Response(
            message=Message(role="assistant", content=(TextPart(text=text),))))
        await cache.aclose()

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("texts", [["one"], ["one", "two", "three"]])
async def test_another_process_s_answer_is_found_after_a_refresh(
    tmp_path: Path, texts: list[str]
) -> None:
    path = tmp_path / "c.db"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    timer = Timer()
    cache = cache_on(path, timer)
    await cache.lookup(request("warm"))
    await cache.aflush()
    for text in texts:
        assert await cache.lookup(request(text)) is None
        done = subprocess.run(
            [sys.executable, str(script), str(path), text],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    timer.now += REFRESH * 0.75
    await cache.lookup(request("refresh"))
    await cache.aflush()
    for text in texts:
        hit = await cache.lookup(request(text))
        assert hit is not None and hit.text == text
    await cache.aclose()


def stored(path: Path) -> set[str]:
    """The answers' texts in the file, read through another connection."""
    import json
    import sqlite3

    if not path.exists():
        return set()
    db = sqlite3.connect(path, timeout=30)
    try:
        bodies = [body for (body,) in db.execute("SELECT body FROM responses")]
    except sqlite3.OperationalError:  # not set up yet
        return set()
    finally:
        db.close()
    return {json.loads(body)["message"]["content"][0]["text"] for body in bodies}


def test_writes_wait_a_moment_and_are_never_lost_with_their_loop(tmp_path: Path) -> None:
    """Stores share a drain a few milliseconds later; a loop that ends before that
    does not lose them: the next store (once the drain is overdue) or close writes
    them."""
    import asyncio

    path = tmp_path / "c.db"
    timer = Timer()
    cache = cache_on(path, timer)

    async def store(text: str) -> None:
        await cache.store(request(text), answer(text))

    asyncio.run(store("first"))  # its loop closes before the write is handed over
    timer.now += 2.0  # that drain is overdue

    async def second() -> None:
        await store("second")
        for _ in range(500):  # bounded: the drain comes after a few milliseconds
            await asyncio.sleep(0.01)
            if stored(path) == {"first", "second"}:
                return

    asyncio.run(second())
    assert stored(path) == {"first", "second"}
    asyncio.run(store("third"))
    cache.close()  # writes what is queued
    assert stored(path) == {"first", "second", "third"}


async def test_invalidate_and_clear_come_after_the_queued_writes(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    cache = cache_on(path, Timer())
    await cache.store(request("gone"), answer("gone"))
    assert await cache.ainvalidate(request("gone"))  # the write is still queued
    await cache.store(request("cleared"), answer("cleared"))
    assert await cache.aclear() == 1
    await cache.aflush()
    assert stored(path) == set()
    assert await cache.lookup(request("gone")) is None
    assert await cache.lookup(request("cleared")) is None
    await cache.aclose()


def test_a_sync_program_that_never_closes_its_kernel_keeps_what_it_stored(
    tmp_path: Path,
) -> None:
    """Sync calls run the kernel's loop only while they wait, so the delayed hand-over
    of a write may never run before the program ends: the write is handed to the
    worker at interpreter exit, before the worker is joined."""
    path = tmp_path / "cache.db"
    script = tmp_path / "store_and_exit.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import llmkernel_cache.plugin
            from llmkernel import Kernel
            from llmkernel.testing.scripted import ScriptedPlugin

            kernel = Kernel.from_config(
                {{
                    "providers": {{"a": {{"type": "scripted"}}}},
                    "plugin": {{"cache": {{"enabled": True, "path": {str(path)!r}}}}},
                }},
                plugins=[ScriptedPlugin(), llmkernel_cache.plugin],
                entry_points=False,
            )
            print(kernel.chat(model="a/m1", messages="keep me").text)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert len(stored(path)) == 1, (done.stdout, done.stderr)
