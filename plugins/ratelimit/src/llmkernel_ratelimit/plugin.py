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

__all__ = ["gate_of", "make_store"]

NAME = "ratelimit"
_gates: weakref.WeakKeyDictionary[Any, RateLimitGate] = weakref.WeakKeyDictionary()


def gate_of(kernel: Kernel) -> RateLimitGate | None:
    """This plugin's gate in ``kernel``, or ``None``."""
    return _gates.get(kernel)


@hookimpl
def configure(kernel: Kernel, config: Config) -> None:
    _gates.pop(kernel, None)  # a reconfigure: the old config's gate closes with it
    table = config.plugin_settings(NAME)
    if not table:
        return  # nothing configured: no gate, nothing on the hot path
    from llmkernel.options import parse_options
    from llmkernel_ratelimit.gate import RateLimitGate
    from llmkernel_ratelimit.settings import RateLimitSettings

    settings = parse_options(RateLimitSettings, table, where=config.where(f"plugin.{NAME}"))
    _gates[kernel] = RateLimitGate(settings, store=make_store(kernel, config, settings))


def make_store(kernel: Kernel, config: Config, settings: Any) -> Any:
    """The store the settings name: fleet-wide over Redis when ``[redis]`` is set
    (unless ``shared = false``), else ``store``: ``file`` (every process of a
    machine), or ``memory`` (``None``, the gate's default)."""
    if config.redis and settings.shared:  # fleet-wide counts (llmkernel-redis)
        from llmkernel_ratelimit.shared import shared_store

        return shared_store(kernel)
    if settings.store != "file":
        return None
    from llmkernel_ratelimit.filestore import FileStore, default_path

    store = FileStore(settings.path or default_path(), capacity=settings.capacity)
    kernel.lifecycle.on_fork(store.reopen)
    kernel.lifecycle.add_closer(store.close)
    return store


@hookimpl
def provide_gate(kernel: Kernel) -> RateLimitGate | None:
    return _gates.get(kernel)


@hookimpl
def collect_stats(kernel: Kernel) -> Mapping[str, Any] | None:
    gate = _gates.get(kernel)
    return gate.stats() if gate is not None else None
