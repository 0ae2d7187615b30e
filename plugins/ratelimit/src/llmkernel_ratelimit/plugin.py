"""llmkernel hooks for rate limits. Cheap to import; the gate is built when a kernel
is configured with at least one limit (or learns from headers)."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from llmkernel import hookimpl

if TYPE_CHECKING:
    from llmkernel.config import Config
    from llmkernel.kernel import Kernel
    from llmkernel_ratelimit.gate import RateLimitGate

__all__ = ["gate_of"]

NAME = "ratelimit"
_gates: weakref.WeakKeyDictionary[Any, RateLimitGate] = weakref.WeakKeyDictionary()


def gate_of(kernel: Kernel) -> RateLimitGate | None:
    """This plugin's gate in ``kernel``, or ``None``."""
    return _gates.get(kernel)


@hookimpl
def configure(kernel: Kernel, config: Config) -> None:
    table = config.plugin_settings(NAME)
    if not table:
        return  # nothing configured: no gate, nothing on the hot path
    from llmkernel.options import parse_options
    from llmkernel_ratelimit.gate import RateLimitGate
    from llmkernel_ratelimit.settings import RateLimitSettings

    settings = parse_options(RateLimitSettings, table, where=config.where(f"plugin.{NAME}"))
    store = None
    if config.redis and settings.shared:  # fleet-wide counts (llmkernel-redis)
        from llmkernel_ratelimit.shared import shared_store

        store = shared_store(kernel)
    _gates[kernel] = RateLimitGate(settings, store=store)


@hookimpl
def provide_gate(kernel: Kernel) -> RateLimitGate | None:
    return _gates.get(kernel)


@hookimpl
def collect_stats(kernel: Kernel) -> Mapping[str, Any] | None:
    gate = _gates.get(kernel)
    return gate.stats() if gate is not None else None
