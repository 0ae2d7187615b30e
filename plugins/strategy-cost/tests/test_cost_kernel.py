"""cost through the kernel: the cheapest candidate that has what the request needs."""

from __future__ import annotations

import llmkernel_routing.plugin
import llmkernel_strategy_cost.plugin
from llmkernel import Kernel, hookimpl
from llmkernel.provider import Provider, ProviderConfig
from llmkernel.testing.scripted import ScriptedProvider
from llmkernel.types import Capabilities


class CapsProvider(ScriptedProvider):
    """A scripted provider that declares whether its models take tools."""

    def __init__(self, config: ProviderConfig, tools: bool) -> None:
        super().__init__(config)
        self.tools = tools

    def capabilities(self, model: str) -> Capabilities:
        return Capabilities(tools=self.tools, context_window=100_000, max_output_tokens=1000)


class CapsPlugin:
    @hookimpl
    def provide_chat(self, config: ProviderConfig) -> Provider | None:
        if config.type != "caps":
            return None
        tools = bool(config.options.get("tools", True))
        return CapsProvider(ProviderConfig(name=config.name, type="caps"), tools)


def _kernel() -> Kernel:
    return Kernel.from_config(
        {
            "providers": {
                "pricey": {"type": "caps", "tools": True},
                "cheap": {"type": "caps", "tools": False},
                "middle": {"type": "caps", "tools": True},
                "unknown": {"type": "caps", "tools": True},
            },
            "models": {"g": ["unknown/m", "pricey/m", "middle/m", "cheap/m"]},
            "prices": {
                "pricey/m": {"input": 10, "output": 30},
                "middle/m": {"input": 1, "output": 3},
                "cheap/m": {"input": 0.1, "output": 0.3},
            },
            "routing": {"strategy": "cost"},
        },
        plugins=[CapsPlugin(), llmkernel_routing.plugin, llmkernel_strategy_cost.plugin],
        entry_points=False,
    )


TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def test_cheapest_first_then_cheapest_with_the_needed_capability():
    with _kernel() as kernel:
        assert kernel.chat("g", "hi", max_tokens=100).provider == "cheap"
        response = kernel.chat("g", "hi", max_tokens=100, tools=[TOOL])
        assert response.provider == "middle"  # cheap lacks tools: dropped before ordering


def test_the_order_is_the_whole_chain_unpriced_last():
    with _kernel() as kernel:
        strategy = kernel.strategy
        ctx_order = [c.provider for c in strategy.select(_ctx(kernel), kernel.models.resolve("g"))]
        assert ctx_order == ["cheap", "middle", "pricey", "unknown"]


def _ctx(kernel: Kernel):
    """A real request context for a chat, from the kernel's public API."""
    from llmkernel.context import RequestContext

    request = kernel.build_request("g", "hi", max_tokens=100)
    return RequestContext(id="test", kind="chat", kernel=kernel, request=request)
