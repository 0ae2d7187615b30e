"""One test per hook: each shows a plugin using the hook changes what the kernel does."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from llmkernel import Kernel, hookimpl
from llmkernel.errors import ConfigError, LLMKernelError, ServerError
from llmkernel.provider import ProviderConfig
from llmkernel.routing import Candidate
from llmkernel.testing.scripted import ScriptedPlugin, make_kernel, scripted
from llmkernel.types import ChatRequest, ModelPrice, Response, TokenCount


def test_hook_configure() -> None:
    seen: dict[str, Any] = {}

    class Plugin:
        __llmkernel_name__ = "greeter"

        @hookimpl
        def configure(self, kernel: Kernel, config: Any) -> None:
            settings = config.plugin_settings("greeter")
            if set(settings) - {"greeting"}:
                raise ConfigError(f"unknown key in [plugin.greeter] in {config.source}")
            seen["greeting"] = settings.get("greeting")
            seen["kernel"] = kernel

    kernel = make_kernel(["x"], plugins=(Plugin(),), plugin={"greeter": {"greeting": "hi"}})
    assert seen == {"greeting": "hi", "kernel": kernel}
    with pytest.raises(ConfigError, match=r"plugin\.greeter"):
        make_kernel(["x"], plugins=(Plugin(),), plugin={"greeter": {"greting": "hi"}})


def test_hook_register_commands(capsys: pytest.CaptureFixture[str]) -> None:
    from llmkernel.cli_registry import CommandRegistry

    class Plugin:
        @hookimpl
        def register_commands(self, registry: CommandRegistry) -> None:
            registry.add(
                "hello",
                help="say hello",
                arguments=lambda p: p.add_argument("name"),
                run=lambda args, kernel: print(f"hello {args.name}") or 0,
            )

    registry = CommandRegistry()
    kernel = make_kernel(["x"], plugins=(Plugin(),))
    kernel.hook.register_commands(registry=registry)
    assert list(registry.commands) == ["hello"]
    assert registry.commands["hello"].run(type("A", (), {"name": "you"})(), kernel) == 0
    assert capsys.readouterr().out == "hello you\n"
    with pytest.raises(ValueError, match="twice"):
        registry.add("hello", help="again", run=lambda a, k: 0)


def test_hook_provide_transport() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"ok": True})

    class Plugin:
        @hookimpl
        def provide_transport(self, provider: str) -> httpx.AsyncBaseTransport:
            return httpx.MockTransport(answer)

    class Capture:
        @hookimpl(tryfirst=True)
        def provide_chat(self, config: ProviderConfig) -> Any:
            seen.append(f"transport={type(config.transport).__name__}")
            return None

    kernel = make_kernel(["x"], plugins=(Plugin(), Capture()))
    kernel.provider("a")
    assert seen == ["transport=MockTransport"]


def test_hook_provide_chat() -> None:
    kernel = make_kernel(["hello from a"])
    assert kernel.models.provider_plugins["a"] == "scripted"
    assert kernel.chat(model="a/m1", messages="hi").text == "hello from a"
    kernel.close()


def test_hook_price_model() -> None:
    class Prices:
        @hookimpl
        def price_model(self, provider_type: str, model: str) -> ModelPrice | None:
            if (provider_type, model) == ("scripted", "m1"):
                return ModelPrice(input=Decimal("2"), output=Decimal("4"), source="test")
            return None

    kernel = make_kernel(
        ["one two three"], ["x"], plugins=(Prices(),), prices={"b/m1": {"input": 1, "output": 1}}
    )
    with kernel:
        assert kernel.chat(model="a/m1", messages="hi").cost == Decimal(10 * 2 + 3 * 4) / 10**6
        # config [prices] beat plugins
        assert kernel.chat(model="b/m1", messages="hi").cost == Decimal(10 + 1) / 10**6
        assert (
            kernel.models.price(Candidate(provider="a", model="m2", provider_type="scripted"))
            is None
        )


def test_hook_count_tokens() -> None:
    class Counter:
        @hookimpl
        def count_tokens(self, request: ChatRequest, model: str) -> TokenCount:
            return TokenCount(
                tokens=len(request.messages[0].text.split()),
                exact=True,
                method=f"words for {model}",
            )

    kernel = make_kernel(["x"], plugins=(Counter(),))
    count = kernel.count_tokens("a/m1", "three little words")
    assert count == TokenCount(tokens=3, exact=True, method="words for m1")


def test_hook_select_provider() -> None:
    class Reverse:
        @hookimpl
        def select_provider(self, candidates: list[Candidate]) -> list[Candidate]:
            return list(reversed(candidates))

    kernel = make_kernel(["from a"], ["from b"], plugins=(Reverse(),))
    with kernel:
        assert kernel.chat(model="group", messages="hi").provider == "b"
    plain = make_kernel(["from a"], ["from b"])
    with plain:
        assert plain.chat(model="group", messages="hi").provider == "a"


def test_hook_on_request() -> None:
    class Refuse:
        @hookimpl
        def on_request(self, request: ChatRequest) -> None:
            if "forbidden" in request.messages[-1].text:
                raise LLMKernelError("refused by policy")

    kernel = make_kernel(["fine"], plugins=(Refuse(),))
    with kernel:
        with pytest.raises(LLMKernelError, match="policy"):
            kernel.chat(model="a/m1", messages="forbidden words")
        assert kernel.chat(model="a/m1", messages="ok").text == "fine"


def test_hook_provide_cache() -> None:
    class DictCache:
        def __init__(self) -> None:
            self.data: dict[str, Response] = {}

        async def lookup(self, request: ChatRequest) -> Response | None:
            return self.data.get(request.messages[-1].text)

        async def store(self, request: ChatRequest, response: Response) -> None:
            self.data[request.messages[-1].text] = response

    cache = DictCache()

    class Plugin:
        @hookimpl
        def provide_cache(self) -> DictCache:
            return cache

    kernel = make_kernel(["first", "second"], plugins=(Plugin(),))
    with kernel:
        fresh = kernel.chat(model="a/m1", messages="q")
        again = kernel.chat(model="a/m1", messages="q")
        streamed = kernel.stream(model="a/m1", messages="q")
        events = [e.type for e in streamed]
    assert (fresh.text, fresh.cached) == ("first", False)
    assert (again.text, again.cached, again.attempts) == ("first", True, 0)
    assert events == ["text", "usage", "finish"] and streamed.response is not None
    assert streamed.response.cached and streamed.response.text == "first"


def test_hook_on_error() -> None:
    seen: list[tuple[str, str, int]] = []

    class Watch:
        @hookimpl
        def on_error(self, candidate: Candidate, error: Exception, attempt: int) -> None:
            seen.append((candidate.provider, type(error).__name__, attempt))

    class Broken:
        @hookimpl
        def on_error(self) -> None:
            raise RuntimeError("observer bug")

    kernel = make_kernel(
        [ServerError("boom"), ServerError("boom"), "ok"], plugins=(Watch(), Broken())
    )
    with kernel:
        assert kernel.chat(model="a/m1", messages="hi").text == "ok"
    assert seen == [("a", "ServerError", 1), ("a", "ServerError", 2)]


def test_hook_on_response() -> None:
    seen: list[Response] = []

    class Ledger:
        @hookimpl
        def on_response(self, request: ChatRequest, response: Response) -> None:
            seen.append(response)

    class Broken:
        @hookimpl
        def on_response(self) -> None:
            raise RuntimeError("ledger down")

    kernel = make_kernel(["one", ["two"]], plugins=(Ledger(), Broken()))
    with kernel:
        kernel.chat(model="a/m1", messages="hi")
        list(kernel.stream(model="a/m1", messages="hi"))
    assert [r.text for r in seen] == ["one", "two"]
    assert all(r.provider == "a" and r.latency > 0 for r in seen)


def test_a_provider_plugin_refusing_its_options_stops_startup() -> None:
    with pytest.raises(ConfigError, match="bogus"):
        Kernel.from_config(
            {"providers": {"x": {"type": "scripted", "bogus": 1}}},
            plugins=[ScriptedPlugin()],
            entry_points=False,
        )


def test_config_prices_by_type_beat_even_a_tryfirst_plugin() -> None:
    class Eager:
        @hookimpl(tryfirst=True)
        def price_model(self) -> ModelPrice:
            return ModelPrice(input=Decimal(100), output=Decimal(100))

    kernel = make_kernel(
        ["one"], plugins=(Eager(),), prices={"scripted/m1": {"input": 1, "output": 1}}
    )
    with kernel:
        assert kernel.chat(model="a/m1", messages="hi").cost == Decimal(11) / 10**6


def test_a_failing_price_plugin_leaves_the_answer_unpriced() -> None:
    class Broken:
        @hookimpl
        def price_model(self) -> ModelPrice:
            raise RuntimeError("price feed down")

    with make_kernel(["still here"], plugins=(Broken(),)) as kernel:
        response = kernel.chat(model="a/m1", messages="hi")
    assert response.text == "still here" and response.cost is None


def test_observers_run_in_pluggy_order() -> None:
    order: list[str] = []

    class First:
        @hookimpl(tryfirst=True)
        def on_response(self) -> None:
            order.append("first")

    class Last:
        @hookimpl(trylast=True)
        def on_response(self) -> None:
            order.append("last")

    class Plain:
        @hookimpl
        def on_response(self) -> None:
            order.append("plain")

    with make_kernel(["x"], plugins=(Last(), First(), Plain())) as kernel:
        kernel.chat(model="a/m1", messages="hi")
    assert order == ["first", "plain", "last"]


def test_a_plugin_failing_in_configure_is_named() -> None:
    from llmkernel.errors import PluginError

    class Faulty:
        __llmkernel_name__ = "faulty"

        @hookimpl
        def configure(self) -> None:
            raise KeyError("missing")

    with pytest.raises(PluginError, match="'faulty' failed in configure: KeyError"):
        make_kernel(["x"], plugins=(Faulty(),))


# ---------------------------------------------------------------------- issue 6 hooks


def test_hook_register_strategies() -> None:
    from llmkernel.context import RequestContext

    class Cheapest:
        def __init__(self, kernel: Kernel, settings: Any) -> None:
            self.prefer = settings.get("prefer", "b")

        def select(self, ctx: RequestContext, candidates: list[Candidate]) -> list[Candidate]:
            return sorted(candidates, key=lambda c: c.provider != self.prefer)

    class Plugin:
        @hookimpl
        def register_strategies(self, registry: Any) -> None:
            registry.add("prefer", Cheapest)

    kernel = make_kernel(
        ["from a"], ["from b"], plugins=(Plugin(),), routing={"strategy": "prefer"}
    )
    with kernel:
        assert kernel.chat(model="group", messages="hi").provider == "b"
    kernel = make_kernel(
        ["from a"],
        ["from b"],
        plugins=(Plugin(),),
        routing={"strategy": "prefer", "prefer": {"prefer": "a"}},
    )
    with kernel:
        assert kernel.chat(model="group", messages="hi").provider == "a"
    assert kernel.strategies.names() == ["prefer", "priority"]


def test_hook_filter_candidates() -> None:
    from llmkernel.context import Drop

    class OnlyGold:
        @hookimpl
        def filter_candidates(self, candidates: list[Candidate]) -> list[Drop]:
            return [
                Drop(candidate=c, reason="not gold")
                for c in candidates
                if c.tags.get("tier") != "gold"
            ]

    models = {"tiered": [{"target": "a/m1", "tier": "silver"}, {"target": "b/m1", "tier": "gold"}]}
    kernel = make_kernel(["from a"], ["from b"], plugins=(OnlyGold(),), models=models)
    with kernel:
        assert kernel.chat(model="tiered", messages="hi").provider == "b"


def test_hook_decide() -> None:
    from llmkernel.context import Decision

    class NeverRetry:
        @hookimpl
        def decide(self, error: Exception) -> Decision:
            return Decision(action="raise" if isinstance(error, ServerError) else "next")

    kernel = make_kernel([ServerError("down")], ["from b"], plugins=(NeverRetry(),))
    with kernel, pytest.raises(ServerError):
        kernel.chat(model="group", messages="hi")


def test_hook_provide_gate() -> None:
    from llmkernel.errors import RefusedError

    class OnePerProvider:
        def __init__(self) -> None:
            self.events: list[str] = []

        @hookimpl
        def provide_gate(self) -> OnePerProvider:
            return self

        async def acquire(self, ctx: Any, attempt: Any) -> None:
            if attempt.candidate.provider == "a":
                raise RefusedError("a is full", kind="rate_limit", retry_after=1.0)
            self.events.append(f"acquire {attempt.candidate.provider}")

        def release(self, ctx: Any, attempt: Any, outcome: Any) -> None:
            self.events.append(f"release {attempt.candidate.provider} {outcome.status}")

    gate = OnePerProvider()
    with make_kernel(["never"], ["from b"], plugins=(gate,)) as kernel:
        assert kernel.chat(model="group", messages="hi").provider == "b"
    assert gate.events == ["acquire b", "release b ok"]


def test_hook_on_attempt_end() -> None:
    ends: list[tuple[str, int, str]] = []

    class Plugin:
        @hookimpl
        def on_attempt_end(self, attempt: Any, outcome: Any) -> None:
            ends.append((attempt.candidate.provider, attempt.number, outcome.status))

    kernel = make_kernel([ServerError("down"), "ok"], plugins=(Plugin(),))
    with kernel:
        kernel.chat(model="a/m1", messages="hi")
    assert ends == [("a", 1, "error"), ("a", 2, "ok")]


def test_hook_on_request_end() -> None:
    ends: list[tuple[str, str, Any]] = []

    class Plugin:
        @hookimpl
        def on_request_end(self, ctx: Any, outcome: Any) -> None:
            ends.append((ctx.kind, outcome.status, outcome.cost))

    kernel = make_kernel(
        ["ok", ServerError("down")],
        plugins=(Plugin(),),
        retry={"attempts": 1},
        prices={"a/m1": {"input": 1, "output": 2}},
    )
    with kernel:
        kernel.chat(model="a/m1", messages="hi")
        with pytest.raises(ServerError):
            kernel.chat(model="a/m1", messages="hi")
    assert ends[0][:2] == ("chat", "ok") and ends[0][2] == Decimal("0.000012")
    assert ends[1] == ("chat", "error", None)


def test_a_plugin_saying_it_is_idle_is_skipped_for_the_calls_that_start_then() -> None:
    """``llmkernel_idle(kernel)`` true when a call starts: the kernel calls none of
    that plugin's per-call hooks in it; a hook another plugin also implements still
    runs; a check that raises counts as not idle."""
    seen: list[str] = []

    class Quiet:
        idle = True

        def llmkernel_idle(self, kernel: Kernel) -> bool:
            assert isinstance(kernel, Kernel)
            return self.idle

        @hookimpl
        def on_error(self, error: Exception) -> None:
            seen.append(f"quiet error {type(error).__name__}")

        @hookimpl
        def on_request_end(self, outcome: Any) -> None:
            seen.append(f"quiet end {outcome.status}")

        @hookimpl
        def on_response(self) -> None:
            seen.append("quiet response")

    class Broken:
        def llmkernel_idle(self, kernel: Kernel) -> bool:
            raise RuntimeError("check bug")

        @hookimpl
        def on_response(self) -> None:
            seen.append("broken response")

    quiet = Quiet()
    kernel = make_kernel(
        [ServerError("boom"), "ok", ServerError("boom"), "ok"], plugins=(quiet, Broken())
    )
    with kernel:
        assert kernel.chat(model="a/m1", messages="hi").text == "ok"
        assert sorted(seen) == ["broken response", "quiet response"]  # no error, no end
        seen.clear()
        quiet.idle = False
        assert kernel.chat(model="a/m1", messages="hi").text == "ok"
    assert seen[0] == "quiet error ServerError" and seen[-1] == "quiet end ok"
    assert sorted(seen[1:-1]) == ["broken response", "quiet response"]


def test_hook_on_request_end_may_hand_back_an_awaitable() -> None:
    """The kernel awaits what the hook returns before the caller gets the answer
    (a ledger makes calls wait for their rows); after a success, what it raises is
    the call's error; after a failure, the call's own error is raised."""
    import asyncio

    order: list[str] = []

    class Durable:
        def __init__(self, fail: bool) -> None:
            self.fail = fail

        def __await__(self) -> Any:
            yield from asyncio.sleep(0.01).__await__()
            order.append("durable")
            if self.fail:
                raise LLMKernelError("the ledger could not write")

    class Plugin:
        fail = False

        @hookimpl
        def on_request_end(self, outcome: Any) -> Any:
            order.append(f"end {outcome.status}")
            return Durable(self.fail)

    plugin = Plugin()
    kernel = make_kernel(
        ["ok", ServerError("down"), "ok", "one two"], plugins=(plugin,), retry={"attempts": 1}
    )
    with kernel:
        kernel.chat(model="a/m1", messages="hi")
        order.append("returned")
        with pytest.raises(ServerError):
            kernel.chat(model="a/m1", messages="hi")
        order.append("raised")
        plugin.fail = True
        with pytest.raises(LLMKernelError, match="could not write"):
            kernel.chat(model="a/m1", messages="hi")
        plugin.fail = False
        events = [e.type for e in kernel.stream(model="a/m1", messages="hi")]
        order.append("stream ended")
    assert events[-1] == "finish"
    assert order == [
        "end ok",
        "durable",
        "returned",
        "end error",
        "durable",
        "raised",
        "end ok",
        "durable",
        "end ok",
        "durable",
        "stream ended",
    ]


def test_hook_collect_stats() -> None:
    class Counter:
        def __init__(self) -> None:
            self.calls = 0

        @hookimpl
        def on_request_end(self) -> None:
            self.calls += 1

        @hookimpl
        def collect_stats(self) -> dict[str, Any]:
            return {"deployments": {"a/m1": {"calls": self.calls}}, "counter": {"ok": True}}

    class Other:
        @hookimpl
        def collect_stats(self) -> dict[str, Any]:
            return {"deployments": {"a/m1": {"breaker": "closed"}}}

    with make_kernel(["ok"], plugins=(Counter(), Other())) as kernel:
        kernel.chat(model="a/m1", messages="hi")
        assert kernel.stats() == {
            "deployments": {"a/m1": {"calls": 1, "breaker": "closed"}},
            "counter": {"ok": True},
        }


def test_plugins_declaring_async_hooks_or_wrappers_are_refused_by_name() -> None:
    class Async:
        __llmkernel_name__ = "asyncy"

        @hookimpl
        async def on_response(self) -> None:
            pass

    class Wrapper:
        __llmkernel_name__ = "wrappy"

        @hookimpl(wrapper=True)
        def count_tokens(self) -> Any:
            return (yield)

    kernel = make_kernel(["ok"], plugins=(Async(), Wrapper()))
    failed = {p.name: p.error for p in kernel.plugins if p.status == "failed"}
    assert "on_response is an async def" in failed["asyncy"]
    assert "count_tokens is a wrapper" in failed["wrappy"]


def test_a_plugin_may_add_hookspecs_of_its_own() -> None:
    import types

    from llmkernel import hookspec

    specs = types.SimpleNamespace()

    @hookspec
    def on_budget_alert(kernel: Any, alert: Any) -> None:
        """An alert."""

    specs.on_budget_alert = on_budget_alert
    seen: list[Any] = []

    class Listener:
        @hookimpl
        def on_budget_alert(self, alert: Any) -> None:
            seen.append(alert)

    class Budgets:
        llmkernel_hookspecs = specs

    kernel = make_kernel(["ok"], plugins=(Listener(), Budgets()))
    assert all(p.status == "loaded" for p in kernel.plugins), kernel.plugins
    kernel.hook.on_budget_alert(kernel=kernel, alert="80%")
    assert seen == ["80%"]


def test_config_naming_a_plugin_nobody_installed_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"\[plugin.scriptd\].*did you mean 'scripted'"):
        make_kernel(["ok"], plugin={"scriptd": {}})


def test_implicit_providers_can_be_turned_off() -> None:
    from llmkernel.errors import NoProviderError

    kernel = make_kernel(["ok"], routing={"implicit_providers": False})
    with kernel:
        assert kernel.chat(model="a/m1", messages="hi").text == "ok"
        with pytest.raises(NoProviderError, match="implicit_providers"):
            kernel.chat(model="scripted/m1", messages="hi")


def test_closers_and_plugin_objects_are_closed_with_the_kernel() -> None:
    closed: list[str] = []

    class Gate:
        async def acquire(self, ctx: Any, attempt: Any) -> None:
            pass

        def release(self, ctx: Any, attempt: Any, outcome: Any) -> None:
            pass

        async def aclose(self) -> None:
            closed.append("gate")

    class Plugin:
        @hookimpl
        def provide_gate(self) -> Gate:
            return Gate()

        @hookimpl
        def configure(self, kernel: Kernel) -> None:
            kernel.lifecycle.add_closer(lambda: closed.append("closer"))

    with make_kernel(["ok"], plugins=(Plugin(),)) as kernel:
        kernel.chat(model="a/m1", messages="hi")
    assert closed == ["gate", "closer"]


def test_claimed_options_reach_plugins_but_not_providers() -> None:
    seen: list[Any] = []

    class Plugin:
        @hookimpl
        def configure(self, kernel: Kernel) -> None:
            kernel.models.claim_options("cache_ttl")

        @hookimpl
        def on_request(self, request: ChatRequest) -> None:
            seen.append(dict(request.options))

    with make_kernel(["ok"], plugins=(Plugin(),)) as kernel:
        kernel.chat("a/m1", "hi", options={"cache_ttl": 5, "seed": 1})
        sent = scripted(kernel, "a").requests[0]
    assert seen == [{"cache_ttl": 5, "seed": 1}]
    assert sent.options == {"seed": 1}
