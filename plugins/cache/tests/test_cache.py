"""The cache through the kernel's pipeline: hits, misses, TTL, eviction, streams."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llmkernel import Kernel
from llmkernel.testing.scripted import make_kernel, scripted
from llmkernel.types import (
    FinishEvent,
    Message,
    ReasoningDelta,
    ReasoningPart,
    Response,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageEvent,
    replace,
)
from llmkernel_cache import codec, plugin
from llmkernel_cache.cache import ResponseCache
from llmkernel_cache.settings import CacheSettings
from llmkernel_cache.store import SQLiteStore


def cached_kernel(tmp_path: Path, script: list[Any] | None = None, **settings: Any) -> Kernel:
    table = {"enabled": True, "path": str(tmp_path / "cache.db"), **settings}
    return make_kernel(script or [], plugins=(plugin,), plugin={"cache": table})


def the_cache(kernel: Kernel) -> ResponseCache:
    cache = kernel.cache
    assert isinstance(cache, ResponseCache)
    return cache


async def test_second_call_is_a_hit_with_original_usage_and_zero_cost(tmp_path: Path) -> None:
    kernel = cached_kernel(tmp_path, ["first answer"])
    async with kernel:
        fresh = await kernel.achat(model="a/m1", messages="hi")
        hit = await kernel.achat(model="a/m1", messages="hi")
        other = await kernel.achat(model="a/m1", messages="something else")
    assert not fresh.cached and fresh.text == "first answer"
    assert hit.cached and hit.text == "first answer" and hit.attempts == 0
    assert hit.usage == fresh.usage and hit.cost == Decimal(0)
    assert not other.cached
    assert len(scripted(kernel, "a").requests) == 2
    stats = the_cache(kernel).stats()
    assert (stats["hits"], stats["misses"], stats["memory_hits"]) == (1, 2, 1)


async def test_cache_false_and_temperature_bypass(tmp_path: Path) -> None:
    kernel = cached_kernel(tmp_path, ["one", "two", "three", "four"])
    async with kernel:
        await kernel.achat(model="a/m1", messages="hi", cache=False)
        second = await kernel.achat(model="a/m1", messages="hi", cache=False)
        warm = await kernel.achat(model="a/m1", messages="hi", temperature=0.7)
        again = await kernel.achat(model="a/m1", messages="hi", temperature=0.7)
    assert not second.cached and not warm.cached and not again.cached
    assert len(scripted(kernel, "a").requests) == 4
    assert the_cache(kernel).stats()["bypassed"] == 4


async def test_controls_in_metadata(tmp_path: Path) -> None:
    kernel = cached_kernel(tmp_path, ["one", "two"])
    async with kernel:
        await kernel.achat(model="a/m1", messages="hi", metadata={"cache": "false"})
        second = await kernel.achat(model="a/m1", messages="hi", metadata={"cache": "false"})
        third = await kernel.achat(model="a/m1", messages="hi", metadata={"cache_ttl": "60"})
    assert not second.cached and not third.cached
    assert len(scripted(kernel, "a").requests) == 3


async def test_temperature_above_zero_when_configured(tmp_path: Path) -> None:
    kernel = cached_kernel(tmp_path, ["one"], temperature_above_zero=True)
    async with kernel:
        await kernel.achat(model="a/m1", messages="hi", temperature=0.7)
        hit = await kernel.achat(model="a/m1", messages="hi", temperature=0.7)
    assert hit.cached


async def test_per_model_switch(tmp_path: Path) -> None:
    kernel = cached_kernel(tmp_path, ["one", "two"], models={"a/m1": {"enabled": False}})
    async with kernel:
        await kernel.achat(model="a/m1", messages="hi")
        second = await kernel.achat(model="a/m1", messages="hi")
    assert not second.cached


async def test_tenants_do_not_share_answers(tmp_path: Path) -> None:
    kernel = cached_kernel(tmp_path, ["for a", "for b"])
    async with kernel:
        a = await kernel.achat(model="a/m1", messages="hi", metadata={"tenant": "a"})
        b = await kernel.achat(model="a/m1", messages="hi", metadata={"tenant": "b"})
        a2 = await kernel.achat(model="a/m1", messages="hi", metadata={"tenant": "a"})
    assert (a.text, b.text, a2.text) == ("for a", "for b", "for a")
    assert not b.cached and a2.cached


async def test_errors_are_never_stored(tmp_path: Path) -> None:
    from llmkernel import errors
    from llmkernel.testing.scripted import err

    kernel = cached_kernel(tmp_path, [err(errors.InvalidRequestError), "fine"])
    async with kernel:
        with pytest.raises(errors.InvalidRequestError):
            await kernel.achat(model="a/m1", messages="hi")
        later = await kernel.achat(model="a/m1", messages="hi")
    assert later.text == "fine" and not later.cached


async def test_answers_survive_in_sqlite_for_a_new_kernel(tmp_path: Path) -> None:
    first = cached_kernel(tmp_path, ["persisted"])
    async with first:
        await first.achat(model="a/m1", messages="hi")
        await the_cache(first).aflush()
    await the_cache(first).aclose()
    second = cached_kernel(tmp_path, ["never asked"])
    async with second:
        hit = await second.achat(model="a/m1", messages="hi")
    assert hit.cached and hit.text == "persisted"
    assert the_cache(second).stats()["memory_hits"] == 0
    await the_cache(second).aclose()


# ---------------------------------------------------------------------- streams


def coalesced(events: list[StreamEvent]) -> list[tuple[str, Any]]:
    """Events with adjacent deltas of one kind joined (chunk boundaries carry no
    meaning); cost left out (a hit costs nothing)."""
    out: list[tuple[str, Any]] = []
    for event in events:
        if isinstance(event, TextDelta):
            if out and out[-1][0] == "text":
                out[-1] = ("text", out[-1][1] + event.text)
            else:
                out.append(("text", event.text))
        elif isinstance(event, ReasoningDelta):
            out.append(("reasoning", (event.text, event.signature, event.index)))
        elif isinstance(event, ToolCallDelta):
            last = out[-1] if out else None
            if last is not None and last[0] == "tool_call" and last[1][0] == event.index:
                index, id_, name, args = last[1]
                out[-1] = (
                    "tool_call",
                    (index, id_ or event.id, name or event.name, args + event.arguments),
                )
            else:
                out.append(("tool_call", (event.index, event.id, event.name, event.arguments)))
        elif isinstance(event, UsageEvent):
            out.append(("usage", event.usage))
        elif isinstance(event, FinishEvent):
            out.append(("finish", event.finish_reason))
        else:
            out.append((event.type, None))
    return out


async def test_a_stream_from_cache_equals_the_original(tmp_path: Path) -> None:
    pieces = [
        ReasoningDelta(text="thinking ", index=0),
        ReasoningDelta(text="hard", index=0),
        ReasoningDelta(signature="sig-1", index=0),
        "Hello",
        ", ",
        "world",
        ToolCallDelta(index=0, id="call_1", name="lookup", arguments='{"q":'),
        ToolCallDelta(index=0, arguments='"x"}'),
    ]
    kernel = cached_kernel(tmp_path, [pieces])
    async with kernel:
        original = [e async for e in kernel.astream(model="a/m1", messages="hi")]
        stream = kernel.astream(model="a/m1", messages="hi")
        replayed = [e async for e in stream]
    assert stream.response is not None and stream.response.cached
    assert len(scripted(kernel, "a").requests) == 1
    # reasoning fragments of one block become one delta plus its signature
    want = coalesced(original)
    want_reasoning = [("reasoning", ("thinking hard", None, 0)), ("reasoning", ("", "sig-1", 0))]
    got = coalesced(replayed)
    assert got[:1] == [("reasoning", ("thinking hard", "sig-1", 0))]
    assert want[:3] == [
        ("reasoning", ("thinking ", None, 0)),
        ("reasoning", ("hard", None, 0)),
        want_reasoning[1],
    ]
    assert got[1:] == want[3:]
    assert [t for t, _ in got[1:]] == ["text", "tool_call", "usage", "finish"]


async def test_a_plain_stream_replays_event_for_event(tmp_path: Path) -> None:
    kernel = cached_kernel(tmp_path, [["one two three"]])
    async with kernel:
        original = [e async for e in kernel.astream(model="a/m1", messages="hi")]
        replayed = [e async for e in kernel.astream(model="a/m1", messages="hi")]
    strip = lambda es: [e if not isinstance(e, UsageEvent) else e.usage for e in es]  # noqa: E731
    assert strip(replayed) == strip(original)


async def test_a_cut_stream_is_not_stored(tmp_path: Path) -> None:
    from llmkernel import errors

    kernel = cached_kernel(tmp_path, [["partial", errors.ServerError("cut")], "whole"])
    async with kernel:
        with pytest.raises(errors.ServerError):
            async for _ in kernel.astream(model="a/m1", messages="hi"):
                pass
        after = await kernel.achat(model="a/m1", messages="hi")
    assert after.text == "whole" and not after.cached


# ---------------------------------------------------------------------- ttl and eviction


def response(text: str, finish: str = "stop") -> Response:
    return Response(
        message=Message(role="assistant", content=(TextPart(text=text),)),
        usage=Usage(input_tokens=3, output_tokens=1),
        finish_reason=finish,  # type: ignore[arg-type]
    )


def request(text: str, **options: Any) -> Any:
    return Kernel.from_config({}, entry_points=False).build_request("a/m1", text, **options)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("where", ["memory", "sqlite"])
async def test_ttl(tmp_path: Path, where: str) -> None:
    clock = Clock()
    cache = ResponseCache(
        CacheSettings(enabled=True, path=str(tmp_path / "c.db"), ttl=10), clock=clock
    )
    await cache.store(request("hi"), response("x"))
    await cache.store(request("long", cache_ttl=100), response("y"))
    await cache.store(request("forever", cache_ttl=0), response("z"))
    await cache.aflush()
    clock.now += 9
    if where == "sqlite":
        cache.memory.clear()
    assert await cache.lookup(request("hi")) is not None
    clock.now += 2
    if where == "sqlite":
        cache.memory.clear()
    assert await cache.lookup(request("hi")) is None
    assert await cache.lookup(request("long")) is not None
    clock.now += 10**6
    if where == "sqlite":
        cache.memory.clear()
    assert await cache.lookup(request("long")) is None
    assert await cache.lookup(request("forever")) is not None
    await cache.aclose()


async def test_bad_ttl_option_is_named(tmp_path: Path) -> None:
    from llmkernel.errors import InvalidRequestError

    cache = ResponseCache(CacheSettings(enabled=True, path=""))
    with pytest.raises(InvalidRequestError, match="cache_ttl"):
        await cache.lookup(request("hi", cache_ttl="soon"))


async def test_memory_eviction_by_entries_and_bytes() -> None:
    cache = ResponseCache(CacheSettings(enabled=True, path="", memory_entries=3))
    for i in range(5):
        await cache.store(request(f"q{i}"), response(f"a{i}"))
    assert len(cache.memory) == 3
    assert await cache.lookup(request("q0")) is None
    assert await cache.lookup(request("q4")) is not None
    body = len(codec.dumps(response("a0")).encode())
    small = ResponseCache(CacheSettings(enabled=True, path="", memory_bytes=body * 2))
    for i in range(4):
        await small.store(request(f"q{i}"), response(f"a{i}"))
    assert len(small.memory) == 2 and small.memory.bytes <= body * 2


def test_sqlite_eviction_least_recently_used(tmp_path: Path) -> None:
    from llmkernel_cache.store import Entry

    store = SQLiteStore(str(tmp_path / "s.db"), max_entries=3, max_bytes=10**9, touch_batch=1)
    for i in range(3):
        store.put(Entry(namespace="n", key=f"k{i}", body="x" * 10, size=10, created=100.0 + i))
    assert store.get("n", "k0", 200.0) is not None  # k0 is now the most recently used
    store.put(Entry(namespace="n", key="k3", body="x" * 10, size=10, created=300.0))
    assert store.get("n", "k1", 301.0) is None
    assert store.get("n", "k0", 301.0) is not None
    assert store.totals().entries == 3
    by_bytes = SQLiteStore(str(tmp_path / "b.db"), max_entries=100, max_bytes=25)
    for i in range(4):
        by_bytes.put(Entry(namespace="n", key=f"k{i}", body="x" * 10, size=10, created=1.0 + i))
    totals = by_bytes.totals()
    assert totals.bytes <= 25 and totals.entries == 2
    assert by_bytes.get("n", "k3", 10.0) is not None
    store.close()
    by_bytes.close()


async def test_truncated_and_refused_answers_are_not_stored() -> None:
    cache = ResponseCache(CacheSettings(enabled=True, path=""))
    await cache.store(request("a"), response("x", finish="length"))
    await cache.store(request("b"), response("x", finish="content_filter"))
    assert await cache.lookup(request("a")) is None
    assert await cache.lookup(request("b")) is None
    keep = ResponseCache(CacheSettings(enabled=True, path="", store_truncated=True))
    await keep.store(request("a"), response("x", finish="length"))
    assert await keep.lookup(request("a")) is not None


async def test_invalidate_and_clear_by_namespace(tmp_path: Path) -> None:
    cache = ResponseCache(CacheSettings(enabled=True, path=str(tmp_path / "c.db")))
    for tenant in ("a", "b"):
        for q in ("x", "y"):
            await cache.store(request(q, metadata={"tenant": tenant}), response(q))
    await cache.aflush()
    assert await cache.ainvalidate(request("x", metadata={"tenant": "a"}))
    assert await cache.lookup(request("x", metadata={"tenant": "a"})) is None
    assert await cache.lookup(request("x", metadata={"tenant": "b"})) is not None
    assert await cache.aclear("b") == 2
    assert await cache.lookup(request("x", metadata={"tenant": "b"})) is None
    assert await cache.lookup(request("y", metadata={"tenant": "a"})) is not None
    assert {k: v.entries for k, v in (await asyncio.to_thread(cache.namespaces)).items()} == {
        "a": 1
    }
    await cache.aclose()


def test_codec_round_trip() -> None:
    original = Response(
        message=Message(
            role="assistant",
            content=(ReasoningPart(text="t", signature="s"), TextPart(text="answer")),
            tool_calls=(ToolCall(id="c1", name="f", arguments={"a": [1, 2]}, signature="g"),),
        ),
        finish_reason="tool_calls",
        usage=Usage(input_tokens=5, output_tokens=7, cached_input_tokens=2, reasoning_tokens=3),
        id="resp_1",
        model="m1",
        provider="a",
        parsed={"k": "v"},
        cost=Decimal("0.000123"),
        headers={"x-ratelimit-remaining-requests": "1"},
    )
    back = codec.loads(codec.dumps(original))
    assert back.message == original.message
    assert (back.usage, back.id, back.model, back.provider, back.parsed, back.cost) == (
        original.usage,
        "resp_1",
        "m1",
        "a",
        {"k": "v"},
        Decimal("0.000123"),
    )
    assert back.headers == {}
    # what the memory LRU keeps without the round trip is the same value
    kept = codec.kept(replace(original, latency=1.5, attempts=3, cached=True))
    assert kept == back
    assert codec.kept(replace(original, parsed=object())).parsed is None


async def test_a_memory_hit_equals_a_sqlite_hit(tmp_path: Path) -> None:
    cache = ResponseCache(CacheSettings(enabled=True, path=str(tmp_path / "c.db")))
    fresh = replace(response("x"), headers={"x-request-id": "1"}, latency=0.2, attempts=2)
    await cache.store(request("hi"), fresh)
    await cache.aflush()
    from_memory = await cache.lookup(request("hi"))
    cache.memory.clear()
    from_sqlite = await cache.lookup(request("hi"))
    assert from_memory is not None and from_memory == from_sqlite
    assert from_memory.headers == {} and from_memory.attempts == 1
    await cache.aclose()


async def test_a_reused_request_object_is_keyed_afresh_each_call(tmp_path: Path) -> None:
    cache = ResponseCache(CacheSettings(enabled=True, path=""))
    asked = request("hi", seed=1)
    assert await cache.lookup(asked) is None
    await cache.store(asked, response("seed one"))  # the key of its lookup
    hit = await cache.lookup(asked)
    assert hit is not None and hit.text == "seed one"
    asked.options["seed"] = 2  # the owner changes its options dict between calls
    assert await cache.lookup(asked) is None
    await cache.store(asked, response("seed two"))
    again = await cache.lookup(request("hi", seed=2))
    assert again is not None and again.text == "seed two"
    first = await cache.lookup(request("hi", seed=1))
    assert first is not None and first.text == "seed one"


# ---------------------------------------------------------------------- concurrency


def test_hits_and_misses_exact_from_threads(tmp_path: Path) -> None:
    warm = [f"prompt {i}" for i in range(10)]
    threads_n = 8
    kernel = cached_kernel(tmp_path)
    with kernel:
        for text in warm:
            kernel.chat(model="a/m1", messages=text)
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for text in warm:
                    assert kernel.chat(model="a/m1", messages=text).cached
                assert not kernel.chat(model="a/m1", messages=f"unique {n}").cached
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        stats = the_cache(kernel).stats()
        upstream = len(scripted(kernel, "a").requests)
    assert not errors
    assert stats["hits"] == threads_n * len(warm)
    assert stats["misses"] == len(warm) + threads_n
    assert upstream == len(warm) + threads_n
    the_cache(kernel).close()


def test_many_caches_one_file_from_threads(tmp_path: Path) -> None:
    """Several caches (as several kernels would) on one SQLite file, writing and
    reading at once: nothing lost, counts exact."""
    path = str(tmp_path / "shared.db")
    caches = [
        ResponseCache(CacheSettings(enabled=True, path=path, memory_entries=0)) for _ in range(4)
    ]
    per_cache = 25

    def work(index: int) -> tuple[int, int]:
        async def run() -> tuple[int, int]:
            cache = caches[index]
            for i in range(per_cache):
                await cache.store(request(f"c{index} q{i}"), response(f"a{i}"))
            await cache.aflush()
            hits = misses = 0
            for i in range(per_cache):
                found = await cache.lookup(request(f"c{index} q{i}"))
                hits += found is not None
                missing = await cache.lookup(request(f"nowhere {index} {i}"))
                misses += missing is None
            return hits, misses

        return asyncio.run(run())

    results: list[tuple[int, int]] = [(0, 0)] * 4

    def runner(i: int) -> None:
        results[i] = work(i)

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == [(per_cache, per_cache)] * 4
    for cache in caches:
        assert cache.stats()["hits"] == per_cache and cache.stats()["misses"] == per_cache
    store = SQLiteStore(path, max_entries=10**6, max_bytes=10**12)
    assert store.totals().entries == 4 * per_cache
    store.close()
    for cache in caches:
        cache.close()


# ---------------------------------------------------------------------- stats and CLI


async def test_kernel_stats_has_the_cache_section(tmp_path: Path) -> None:
    kernel = cached_kernel(tmp_path, ["x"])
    async with kernel:
        await kernel.achat(model="a/m1", messages="hi")
        await kernel.achat(model="a/m1", messages="hi")
        await the_cache(kernel).aflush()
        stats = kernel.stats()["cache"]
    assert (stats["hits"], stats["misses"], stats["hit_rate"]) == (1, 1, 0.5)
    assert stats["entries"] == 1 and stats["bytes"] > 0


def test_cli_stats_and_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from llmkernel_cli.shell import main

    db = tmp_path / "cli.db"
    config = tmp_path / "llmkernel.toml"
    config.write_text(f'[plugin.cache]\nenabled = true\npath = "{db}"\n')

    async def fill() -> None:
        cache = ResponseCache(CacheSettings(enabled=True, path=str(db)))
        for tenant in ("acme", "other"):
            await cache.store(request("q", metadata={"tenant": tenant}), response("a"))
        await cache.aclose()

    asyncio.run(fill())
    assert main(["-c", str(config), "cache", "stats", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {k: v["entries"] for k, v in out["namespaces"].items()} == {"acme": 1, "other": 1}
    assert main(["-c", str(config), "cache", "clear", "--namespace", "acme"]) == 0
    assert "removed 1 entries from namespace 'acme'" in capsys.readouterr().out
    assert main(["-c", str(config), "cache", "stats"]) == 0
    text = capsys.readouterr().out
    assert "other: 1 entries" in text and "acme" not in text
