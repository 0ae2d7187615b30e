"""local-first through a real kernel: the local mock first, the cloud one when the
local one fails or lacks tools."""

from __future__ import annotations

from typing import Any

import llmkernel_mock.plugin
import llmkernel_routing.plugin
import llmkernel_strategy_local_first.plugin
from llmkernel import Kernel
from llmkernel.errors import ServerError

PLUGINS = [llmkernel_mock.plugin, llmkernel_routing.plugin, llmkernel_strategy_local_first.plugin]


def kernel(local_tools: bool = True) -> Kernel:
    config: dict[str, Any] = {
        "providers": {
            "gpu": {"type": "mock", "tool_calls": local_tools},
            "cloud": {"type": "mock"},
        },
        "models": {"llm": [{"target": "cloud/chat"}, {"target": "gpu/chat", "local": True}]},
        "routing": {"strategy": "local-first"},
        "retry": {"attempts": 1, "initial_wait": 0, "max_wait": 0, "jitter": 0},
    }
    return Kernel.from_config(config, plugins=PLUGINS, entry_points=False)


def test_the_local_candidate_goes_first() -> None:
    with kernel() as k:
        assert k.chat("llm", "hi").provider == "gpu"


def test_a_failing_local_candidate_moves_behind_the_cloud() -> None:
    with kernel() as k:
        k.provider("gpu").enqueue(ServerError("local box down"))  # type: ignore[attr-defined]
        first = k.chat("llm", "hi")
        assert first.provider == "cloud" and first.attempts == 2
        # a failure since its last success: the cloud goes first now
        assert k.chat("llm", "hi").provider == "cloud"


def test_a_local_candidate_without_tools_is_left_for_the_cloud() -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with kernel(local_tools=False) as k:
        assert k.chat("llm", "hi").provider == "gpu"
        assert k.chat("llm", "call f", tools=[tool]).provider == "cloud"
