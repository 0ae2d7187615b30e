"""Registers the ``latency`` strategy; cheap to import (the strategy loads on use)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmkernel import hookimpl


def make(kernel: Any, settings: Mapping[str, Any]) -> Any:
    from llmkernel_strategy_latency.strategy import make

    return make(kernel, settings)


@hookimpl
def register_strategies(kernel: Any, registry: Any) -> None:
    registry.add("latency", make)
