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
from llmkernel.testing.scripted import ScriptedPlugin, make_kernel
from llmkernel.types import ChatRequest, ModelPrice, Response, TokenCount


def test_hook_configure() -> None:
    seen: dict[str, Any] = {}

    class Plugin:
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
    assert kernel.provider_plugins["a"] == "scripted"
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
        assert kernel.price(Candidate(provider="a", model="m2", provider_type="scripted")) is None


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
