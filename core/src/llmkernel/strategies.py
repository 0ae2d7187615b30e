"""Named routing strategies: the registry plugins add to, and the built-in one.

A strategy plugin implements ``register_strategies(kernel, registry)`` and calls
``registry.add("latency", factory)``; config ``[routing] strategy = "latency"``
picks it and ``[routing.latency]`` is handed to ``factory(kernel, settings)``. The
built-in ``priority`` strategy keeps config order (through the ``select_provider``
hook, so plugins written for it keep working).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from llmkernel.config import DEFAULT_STRATEGY
from llmkernel.errors import ConfigError, PluginError

if TYPE_CHECKING:
    from llmkernel.context import RequestContext, Strategy
    from llmkernel.kernel import Kernel
    from llmkernel.routing import Candidate

StrategyFactory = Callable[["Kernel", Mapping[str, Any]], "Strategy"]


class StrategyRegistry:
    """Strategies by name, with the plugin that added each."""

    def __init__(self) -> None:
        self._factories: dict[str, tuple[StrategyFactory, str]] = {}
        self.plugin = ""  # set by the kernel while each plugin registers

    def add(self, name: str, factory: StrategyFactory) -> None:
        """Offer strategy ``name``; ``factory(kernel, settings)`` builds it."""
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {self.plugin!r} added a strategy without a name")
        existing = self._factories.get(name)
        if existing is not None:
            raise PluginError(
                f"strategy {name!r} is added by two plugins: {existing[1]!r} and "
                f"{self.plugin!r}; disable one of them ([plugins] disabled)"
            )
        self._factories[name] = (factory, self.plugin)

    def names(self) -> list[str]:
        return sorted(self._factories)

    def plugin_of(self, name: str) -> str:
        return self._factories[name][1]

    def create(
        self, kernel: Kernel, name: str, settings: Mapping[str, Any] | None = None
    ) -> Strategy:
        """Build strategy ``name`` with ``settings`` (default: its ``[routing.<name>]``
        table); an unknown name lists the installed ones. Strategies that order within
        groups (tiers) build others with it."""
        if settings is None:
            settings = kernel.config.routing.settings.get(name, {})
        entry = self._factories.get(name)
        if entry is None:
            close = difflib.get_close_matches(name, self.names(), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown routing strategy {name!r} ([routing] strategy in "
                f"{kernel.config.source}); installed: {', '.join(self.names())}{hint}"
            )
        factory, plugin = entry
        try:
            strategy = factory(kernel, settings)
        except ConfigError:
            raise
        except Exception as exc:
            raise PluginError(
                f"plugin {plugin!r} failed to build strategy {name!r}: {type(exc).__name__}: {exc}"
            ) from exc
        if not callable(getattr(strategy, "select", None)):
            raise PluginError(
                f"plugin {plugin!r}: strategy {name!r} has no select(ctx, candidates) method"
            )
        return strategy


class PriorityStrategy:
    """Config order, through the ``select_provider`` hook (the built-in answer keeps
    config order; a plugin implementing the hook may reorder)."""

    def __init__(self, kernel: Kernel, settings: Mapping[str, Any]) -> None:
        if settings:
            raise ConfigError(
                f"[routing.{DEFAULT_STRATEGY}] in {kernel.config.source} takes no settings, "
                f"got {', '.join(sorted(settings))}"
            )
        self._kernel = kernel

    def select(self, ctx: RequestContext, candidates: list[Candidate]) -> list[Candidate]:
        kernel = self._kernel
        if "select_provider" not in kernel.hooks.implemented:
            return candidates  # only the built-in: config order
        chosen, plugin = kernel.hooks.call(
            "select_provider",
            "first",
            kernel=kernel,
            ctx=ctx,
            request=ctx.request,
            candidates=list(candidates),
        )
        from llmkernel.call import checked

        return checked(chosen, candidates, f"plugin {plugin!r} (select_provider)")


__all__ = ["PriorityStrategy", "StrategyFactory", "StrategyRegistry"]
