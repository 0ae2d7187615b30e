"""kernel.reconfigure: a changed config applied atomically; calls in flight finish on
the config they started with; a config that does not validate changes nothing."""

from __future__ import annotations

import asyncio

import pytest

from llmkernel import ConfigError, Kernel
from llmkernel.testing.scripted import ScriptedPlugin, Slow


def config(reply: str, *, slow: float = 0.0) -> dict:
    item = Slow(slow, reply) if slow else reply
    return {
        "providers": {"a": {"type": "scripted", "script": [item] * 3}},
        "models": {"m": "a/m1"},
    }


async def test_a_call_in_flight_finishes_on_its_config_and_the_next_uses_the_new() -> None:
    kernel = Kernel.from_config(
        config("old", slow=0.3), plugins=[ScriptedPlugin()], entry_points=False
    )
    old = kernel.provider("a")
    async with kernel:
        running = asyncio.create_task(kernel.achat("m", "hi"))
        await asyncio.sleep(0.05)
        reload = asyncio.create_task(kernel.areconfigure(config("new")))
        await asyncio.sleep(0.05)
        assert (await kernel.achat("m", "hi")).text == "new"
        assert (await running).text == "old"
        await reload
        assert getattr(old, "closed", False), "the old config's provider is closed once idle"
        assert kernel.provider("a") is not old


def test_a_config_that_does_not_validate_changes_nothing() -> None:
    kernel = Kernel.from_config(config("old"), plugins=[ScriptedPlugin()], entry_points=False)
    with kernel:
        bad = config("new")
        bad["providers"]["a"]["colour"] = "blue"  # the scripted provider refuses it
        with pytest.raises(ConfigError, match="colour"):
            kernel.reconfigure(bad)
        with pytest.raises(ConfigError):
            kernel.reconfigure({"modles": {}})
        assert kernel.chat("m", "hi").text == "old"
        assert kernel.config.models == {"m": ("a/m1",)}
