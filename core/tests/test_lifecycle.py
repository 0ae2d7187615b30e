"""Gates and end hooks hold their promises however a call ends: every acquire is
released once, every attempt ends once, every call ends once."""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter
from typing import Any

import pytest

from llmkernel import Kernel, hookimpl
from llmkernel.context import Attempt, Decision, Drop, Outcome, RequestContext
from llmkernel.errors import (
    AllCandidatesFailedError,
    NetworkError,
    NoProviderError,
    PluginError,
    RefusedError,
    ServerError,
)
from llmkernel.routing import Candidate
from llmkernel.testing.scripted import Slow, err, make_kernel, scripted
from llmkernel.types import ErrorEvent, TextDelta


class Counting:
    """A gate and both end hooks, counting; refuses the providers in ``refuse``."""

    __llmkernel_name__ = "counting"

    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        self.refuse = refuse
        self.acquired: Counter[Attempt] = Counter()
        self.released: Counter[Attempt] = Counter()
        self.release_order: list[str] = []
        self.attempt_ends: Counter[Attempt] = Counter()
        self.attempt_status: list[str] = []
        self.request_ends: list[tuple[RequestContext, Outcome]] = []
        self.requests: list[RequestContext] = []

    @hookimpl
    def provide_gate(self) -> Counting:
        return self

    async def acquire(self, ctx: RequestContext, attempt: Attempt) -> None:
        if attempt.candidate.provider in self.refuse:
            raise RefusedError("over the test budget", kind="budget", retry_after=3.0)
        self.acquired[attempt] += 1

    def release(self, ctx: RequestContext, attempt: Attempt, outcome: Outcome) -> None:
        self.released[attempt] += 1
        self.release_order.append("counting")

    @hookimpl
    def on_request(self, ctx: RequestContext) -> None:
        self.requests.append(ctx)

    @hookimpl
    def on_attempt_end(self, attempt: Attempt, outcome: Outcome) -> None:
        self.attempt_ends[attempt] += 1
        self.attempt_status.append(outcome.status)

    @hookimpl
    def on_request_end(self, ctx: RequestContext, outcome: Outcome) -> None:
        self.request_ends.append((ctx, outcome))

    def check(self, calls: int) -> None:
        """acquired == released, one on_request_end per call, one on_attempt_end
        per attempt."""
        assert self.acquired == self.released
        assert all(n == 1 for n in self.released.values())
        assert len(self.request_ends) == calls
        assert len({id(ctx) for ctx, _ in self.request_ends}) == calls
        for ctx, _ in self.request_ends:
            for attempt in ctx.attempts:
                assert self.attempt_ends[attempt] == 1, attempt
        assert sum(self.attempt_ends.values()) == sum(len(c.attempts) for c, _ in self.request_ends)

    def statuses(self) -> list[str]:
        return [o.status for _, o in self.request_ends]


async def wait_for_ends(counting: Counting, calls: int) -> None:
    for _ in range(200):
        if len(counting.request_ends) >= calls:
            return
        await asyncio.sleep(0.01)


async def test_success() -> None:
    counting = Counting()
    async with make_kernel(["hello"], plugins=(counting,)) as kernel:
        response = await kernel.achat(model="a/m1", messages="hi", metadata={"tenant": "t1"})
    counting.check(1)
    ctx, outcome = counting.request_ends[0]
    assert outcome.status == "ok" and outcome.response == response
    assert outcome.usage == response.usage and outcome.candidate is not None
    assert ctx.metadata == {"tenant": "t1"} and ctx.kind == "chat"
    assert counting.requests == [ctx]
    assert scripted(kernel, "a").requests[0].metadata == {"tenant": "t1"}


async def test_two_server_errors_then_fallback() -> None:
    counting = Counting()
    kernel = make_kernel(
        [err(ServerError)] * 2, ["from b"], plugins=(counting,), retry={"attempts": 2}
    )
    async with kernel:
        response = await kernel.achat(model="group", messages="hi")
    assert response.provider == "b" and response.attempts == 3
    counting.check(1)
    assert counting.attempt_status == ["error", "error", "ok"]
    ctx = counting.request_ends[0][0]
    assert [(a.candidate.provider, a.number, a.index) for a in ctx.attempts] == [
        ("a", 1, 1),
        ("a", 2, 2),
        ("b", 1, 3),
    ]


async def test_a_refusal_moves_to_the_next_candidate() -> None:
    counting = Counting(refuse=("a",))
    async with make_kernel(["never"], ["from b"], plugins=(counting,)) as kernel:
        response = await kernel.achat(model="group", messages="hi")
        assert scripted(kernel, "a").requests == []
    assert response.provider == "b" and response.attempts == 1
    counting.check(1)
    assert counting.attempt_status == ["refused", "ok"]
    ctx = counting.request_ends[0][0]
    assert [(d.candidate.provider, d.reason) for d in ctx.dropped] == [
        ("a", "over the test budget")
    ]


async def test_every_candidate_refused_raises_the_refusal() -> None:
    counting = Counting(refuse=("a",))
    async with make_kernel(["never"], plugins=(counting,)) as kernel:
        with pytest.raises(RefusedError) as info:
            await kernel.achat(model="a/m1", messages="hi")
    assert info.value.retry_after == 3.0 and info.value.kind == "budget"
    counting.check(1)
    assert counting.statuses() == ["refused"]


@pytest.mark.parametrize("how", ["wait_for", "cancel"])
async def test_cancellation_mid_attempt(how: str) -> None:
    counting = Counting()
    async with make_kernel([Slow(5.0, "late")], plugins=(counting,)) as kernel:
        if how == "wait_for":
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(kernel.achat(model="a/m1", messages="hi"), 0.05)
        else:
            task = asyncio.create_task(kernel.achat(model="a/m1", messages="hi"))
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    counting.check(1)
    assert counting.statuses() == ["cancelled"]
    assert counting.attempt_status == ["cancelled"]


async def test_an_async_stream_closed_after_its_first_event() -> None:
    counting = Counting()
    async with make_kernel([["one ", "two ", "three"]], plugins=(counting,)) as kernel:
        stream = kernel.astream(model="a/m1", messages="hi")
        first = await anext(stream)
        assert first == TextDelta(text="one ")
        await stream.aclose()
    counting.check(1)
    assert counting.statuses() == ["abandoned"]
    outcome = counting.request_ends[0][1]
    assert outcome.response is not None and outcome.response.text == "one "


def test_a_sync_stream_left_by_break() -> None:
    counting = Counting()
    with make_kernel([["one ", "two ", "three"]], plugins=(counting,)) as kernel:
        for event in kernel.stream(model="a/m1", messages="hi"):
            assert event.type == "text"
            break
        gc.collect()
        deadline = time.monotonic() + 2
        while not counting.request_ends and time.monotonic() < deadline:
            time.sleep(0.01)
    counting.check(1)
    assert counting.statuses() == ["abandoned"]


async def test_a_stream_cut_midway() -> None:
    counting = Counting()
    cut = ["one ", "two ", err(NetworkError)]
    async with make_kernel([cut], ["never"], plugins=(counting,)) as kernel:
        events = []
        with pytest.raises(NetworkError):
            async for event in kernel.astream(model="group", messages="hi"):
                events.append(event)
        assert scripted(kernel, "b").requests == [], "no fallback after the first event"
    assert isinstance(events[-1], ErrorEvent)
    counting.check(1)
    assert counting.statuses() == ["error"]
    outcome = counting.request_ends[0][1]
    assert outcome.response is not None and outcome.response.text == "one two "
    assert counting.attempt_status == ["error"]


async def test_a_stream_to_its_end() -> None:
    counting = Counting()
    async with make_kernel([["one ", "two"]], plugins=(counting,)) as kernel:
        stream = kernel.astream(model="a/m1", messages="hi")
        response = await stream.collect()
    counting.check(1)
    outcome = counting.request_ends[0][1]
    assert outcome.status == "ok" and outcome.response == response
    assert outcome.first_event_latency is not None
    assert counting.request_ends[0][0].kind == "stream"


async def test_an_embedding_goes_through_gates_and_end_hooks() -> None:
    counting = Counting()
    async with make_kernel(["x"], plugins=(counting,)) as kernel:
        response = await kernel.aembed("a/m1", ["one", "three"], metadata={"key": "k1"})
    assert response.vectors == [[3.0], [5.0]]
    counting.check(1)
    ctx, outcome = counting.request_ends[0]
    assert ctx.kind == "embed" and ctx.metadata == {"key": "k1"}
    assert outcome.status == "ok" and counting.requests == [ctx]


async def test_a_routing_failure_and_a_local_refusal_end_the_call() -> None:
    counting = Counting()

    class Refuser:
        @hookimpl
        def on_request(self, request: Any) -> None:
            if request.model == "a/refuse":
                raise RefusedError("not today")

    async with make_kernel(["x"], plugins=(counting, Refuser())) as kernel:
        with pytest.raises(NoProviderError):
            await kernel.achat(model="nope/m", messages="hi")
        with pytest.raises(RefusedError):
            await kernel.achat(model="a/refuse", messages="hi")
    counting.check(2)
    assert counting.statuses() == ["error", "refused"]


async def test_200_concurrent_chats_and_streams_with_a_quarter_cancelled() -> None:
    counting = Counting()
    script = [Slow(0.02, "ok") if i % 3 else Slow(0.02, ["a", "b"]) for i in range(400)]
    async with make_kernel(script, plugins=(counting,)) as kernel:

        async def one(i: int) -> None:
            if i % 2:
                await kernel.achat(model="a/m1", messages="hi")
            else:
                async for _ in kernel.astream(model="a/m1", messages="hi"):
                    pass

        tasks = [asyncio.create_task(one(i)) for i in range(200)]
        await asyncio.sleep(0.005)
        for task in tasks[::4]:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await wait_for_ends(counting, 200)
    cancelled = sum(isinstance(r, asyncio.CancelledError) for r in results)
    assert cancelled == 50
    counting.check(200)
    statuses = Counter(counting.statuses())
    assert statuses["ok"] == 150 and statuses["cancelled"] + statuses["abandoned"] == 50


# ---------------------------------------------------------------------- strategies


def _strategy_plugin(plugin_name: str, strategy_name: str, order: str) -> object:
    class Reverse:
        def __init__(self, kernel: Kernel, settings: Any) -> None:
            self.settings = settings

        def select(self, ctx: RequestContext, candidates: list[Candidate]) -> list[Candidate]:
            return list(reversed(candidates)) if order == "reverse" else candidates

    class Plugin:
        __llmkernel_name__ = plugin_name

        @hookimpl
        def register_strategies(self, registry: Any) -> None:
            registry.add(strategy_name, Reverse)

    return Plugin()


@pytest.mark.parametrize("install_order", ["first", "second"])
async def test_the_strategy_named_in_config_wins_whatever_the_install_order(
    install_order: str,
) -> None:
    reverse = _strategy_plugin("strategy-reverse", "reverse", "reverse")
    keep = _strategy_plugin("strategy-keep", "keep", "keep")
    plugins = (reverse, keep) if install_order == "first" else (keep, reverse)
    for name, provider in (("reverse", "b"), ("keep", "a")):
        kernel = make_kernel(["from a"], ["from b"], plugins=plugins, routing={"strategy": name})
        async with kernel:
            response = await kernel.achat(model="group", messages="hi")
        assert response.provider == provider


def test_an_unknown_strategy_lists_the_installed_ones() -> None:
    from llmkernel.errors import ConfigError

    with pytest.raises(
        ConfigError, match=r"'latncy'.*installed: latency, priority; did you mean 'latency'"
    ):
        make_kernel(
            ["x"],
            plugins=(_strategy_plugin("s", "latency", "keep"),),
            routing={"strategy": "latncy"},
        )


def test_two_plugins_adding_one_strategy_name_are_both_named() -> None:
    with pytest.raises(PluginError, match=r"'fast' is added by two plugins: 'two' and 'one'"):
        make_kernel(
            ["x"],
            plugins=(
                _strategy_plugin("one", "fast", "keep"),
                _strategy_plugin("two", "fast", "keep"),
            ),
        )


async def test_a_strategy_returning_strangers_is_named() -> None:
    class Bad:
        def select(self, ctx: Any, candidates: Any) -> Any:
            return "b/m1"

    class Plugin:
        __llmkernel_name__ = "bad"

        @hookimpl
        def register_strategies(self, registry: Any) -> None:
            registry.add("bad", lambda kernel, settings: Bad())

    kernel = make_kernel(["x"], plugins=(Plugin(),), routing={"strategy": "bad"})
    async with kernel:
        with pytest.raises(PluginError, match=r"strategy 'bad' returned str"):
            await kernel.achat(model="a/m1", messages="hi")


# ---------------------------------------------------------------------- fallback rules


@pytest.mark.parametrize(
    ("rules", "tries_on_a", "answer"),
    [
        ({}, 3, "b"),
        ({"server": "next"}, 1, "b"),
        ({"server": "raise"}, 1, None),
        ({"attempts_per_candidate": 2}, 2, "b"),
        ({"max_attempts": 2}, 2, None),
    ],
)
async def test_fallback_rules_from_config_change_the_attempts(
    rules: dict[str, Any], tries_on_a: int, answer: str | None
) -> None:
    kernel = make_kernel([err(ServerError)] * 5, ["from b"], routing={"fallback": rules})
    async with kernel:
        if answer is None:
            with pytest.raises(ServerError):
                await kernel.achat(model="group", messages="hi")
        else:
            response = await kernel.achat(model="group", messages="hi")
            assert response.provider == answer
        assert len(scripted(kernel, "a").requests) == tries_on_a


async def test_a_context_window_error_goes_only_to_a_larger_window() -> None:
    from llmkernel.errors import ContextWindowExceededError
    from llmkernel.types import Capabilities

    windows = {"a": 8000, "b": 4000, "c": 128000}

    class Sized:
        @hookimpl
        def configure(self, kernel: Kernel) -> None:
            for name, window in windows.items():
                provider = kernel.provider(name)
                provider.capabilities = (  # type: ignore[method-assign]
                    lambda model, w=window: Capabilities(context_window=w)
                )

    kernel = make_kernel(
        [err(ContextWindowExceededError)], ["never"], ["big enough"], plugins=(Sized(),)
    )
    async with kernel:
        response = await kernel.achat(model="group", messages="hi")
        assert scripted(kernel, "b").requests == []
    assert response.provider == "c"


async def test_a_decide_plugin_overrides_the_rules() -> None:
    class Stubborn:
        @hookimpl
        def decide(self, attempt: Attempt) -> Decision:
            return (
                Decision(action="retry", wait=0) if attempt.number < 4 else Decision(action="next")
            )

    kernel = make_kernel([err(ServerError)] * 4 + ["fourth"], ["b"], plugins=(Stubborn(),))
    async with kernel:
        response = await kernel.achat(model="group", messages="hi")
    assert response.provider == "b" and len(scripted(kernel, "a").requests) == 4


async def test_filters_drop_with_reasons_and_an_empty_list_says_why() -> None:
    class NoA:
        @hookimpl
        def filter_candidates(self, candidates: list[Candidate]) -> list[Drop]:
            return [
                Drop(candidate=c, reason="a is closed") for c in candidates if c.provider == "a"
            ]

    async with make_kernel(["x"], ["from b"], plugins=(NoA(),)) as kernel:
        response = await kernel.achat(model="group", messages="hi")
        assert response.provider == "b"
        with pytest.raises(NoProviderError, match=r"a/m1: a is closed"):
            await kernel.achat(model="a/m1", messages="hi")


async def test_all_candidates_failing_in_different_ways_lists_each() -> None:
    counting = Counting(refuse=("b",))
    kernel = make_kernel([err(ServerError)] * 3, ["never"], plugins=(counting,))
    async with kernel:
        with pytest.raises(AllCandidatesFailedError) as info:
            await kernel.achat(model="group", messages="hi")
    assert [type(e) for e in info.value.errors] == [ServerError, RefusedError]
    counting.check(1)
