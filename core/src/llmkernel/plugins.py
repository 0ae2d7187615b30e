"""Finding, loading and isolating plugins: one PluginManager per Kernel.

Plugins are entry points in the group ``llmkernel.plugins``; the entry-point name is
the plugin's name everywhere (config, env vars, ``llmkernel plugins``). A plugin that
fails to import or registers hooks that match no spec is reported with its name and
the error, and skipped: the rest keep working.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any, Literal

import attrs
import pluggy

from llmkernel import hookspecs
from llmkernel._logging import log
from llmkernel.config import Config, PluginsConfig

ENTRY_POINT_GROUP = "llmkernel.plugins"
BUILTIN = "llmkernel"

Status = Literal["loaded", "disabled", "failed"]


@attrs.frozen(kw_only=True)
class PluginStatus:
    """What happened to one plugin."""

    name: str
    status: Status
    distribution: str | None = None
    version: str | None = None
    hooks: tuple[str, ...] = ()
    error: str | None = None


def new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def hooks_of(pm: pluggy.PluginManager, plugin: object) -> tuple[str, ...]:
    callers = pm.get_hookcallers(plugin) or []
    return tuple(sorted(c.name for c in callers))


def load_plugins(
    pm: pluggy.PluginManager,
    settings: PluginsConfig,
    *,
    extra: Iterable[object] = (),
    entry_points: bool = True,
) -> list[PluginStatus]:
    """Register the built-in plugin, ``extra`` plugin objects, then entry points.

    Every plugin is registered first, then each is checked (so a plugin may
    implement a hook another plugin adds with ``llmkernel_hookspecs``): one that
    implements unknown hooks, an ``async def`` hook or a wrapper is unregistered
    and reported as failed, naming the hook."""
    from llmkernel import builtin

    pm.register(builtin, name=BUILTIN)
    statuses: list[PluginStatus] = []
    registered: list[tuple[int, object]] = []

    def register(plugin: object, name: str, dist: str | None, version: str | None) -> None:
        status = _register(pm, plugin, name, settings, dist, version)
        if status.status == "loaded":
            registered.append((len(statuses), plugin))
        statuses.append(status)

    for plugin in extra:
        register(plugin, _name_of(plugin), None, None)
    if entry_points:
        from llmkernel._entry_points import entry_points as found

        for ep in found(ENTRY_POINT_GROUP):
            if pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
                continue
            dist_name, version = ep.dist, ep.version
            if not _wanted(ep.name, settings):
                pm.set_blocked(ep.name)
                statuses.append(
                    PluginStatus(
                        name=ep.name, status="disabled", distribution=dist_name, version=version
                    )
                )
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not break the rest
                statuses.append(_failed(ep.name, exc, dist_name, version, "import"))
                continue
            register(plugin, ep.name, dist_name, version)
    for index, plugin in registered:
        status = statuses[index]
        try:
            _check_hooks(pm, plugin, status.name)
        except Exception as exc:
            pm.unregister(plugin)
            statuses[index] = _failed(
                status.name, exc, status.distribution, status.version, "check"
            )
        else:
            statuses[index] = attrs.evolve(status, hooks=hooks_of(pm, plugin))
    return statuses


def known_names(statuses: Iterable[PluginStatus]) -> list[str]:
    """Every plugin name seen while loading, whatever became of it."""
    return sorted({BUILTIN, *(s.name for s in statuses)})


def unavailable_reason(name: str, statuses: Iterable[PluginStatus], config: Config) -> str | None:
    """Why the plugin ``name`` serves nothing: disabled (and by what) or failed."""
    import os

    from llmkernel.config import DISABLE_ENV, LOAD_ENV

    status = next((p for p in statuses if p.name == name), None)
    if status is None or status.status == "loaded":
        return None
    if status.status == "failed":
        error = status.error or "unknown error"
        verb = "load" if error.startswith("PluginValidationError") else "import"
        return f"plugin {name!r} failed to {verb}: {error}"
    env_disabled = [n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",")]
    if name in env_disabled:
        why = f"disabled by {DISABLE_ENV}"
    elif name in config.plugins.disabled:
        why = f"disabled in [plugins] disabled of {config.source}"
    elif os.environ.get(LOAD_ENV):
        why = f"not in {LOAD_ENV}"
    elif config.plugins.enabled:
        why = f"not in [plugins] enabled of {config.source}"
    else:
        why = "disabled"
    return f"plugin {name!r} is {why}"


def _name_of(plugin: object) -> str:
    name = getattr(plugin, "__llmkernel_name__", None) or getattr(plugin, "__name__", None)
    if isinstance(name, str):
        return name.removeprefix("llmkernel_").removesuffix(".plugin").removeprefix("llmkernel_")
    return type(plugin).__name__


def _wanted(name: str, settings: PluginsConfig) -> bool:
    if name in settings.disabled:
        return False
    return not settings.enabled or name in settings.enabled


def _register(
    pm: pluggy.PluginManager,
    plugin: object,
    name: str,
    settings: PluginsConfig,
    dist: str | None,
    version: str | None,
) -> PluginStatus:
    if not _wanted(name, settings):
        return PluginStatus(name=name, status="disabled", distribution=dist, version=version)
    try:
        specs = getattr(plugin, "llmkernel_hookspecs", None)
        if specs is not None:
            pm.add_hookspecs(specs)
        pm.register(plugin, name=name)
    except Exception as exc:
        if pm.is_registered(plugin):
            pm.unregister(plugin)
        return _failed(name, exc, dist, version, "register")
    return PluginStatus(name=name, status="loaded", distribution=dist, version=version)


def _check_hooks(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    problems: list[str] = []
    for caller in pm.get_hookcallers(plugin) or []:
        for impl in caller.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            if not caller.has_spec():
                if not impl.optionalhook:
                    problems.append(f"implements unknown hook {caller.name}")
                continue
            if inspect.iscoroutinefunction(impl.function) or inspect.isasyncgenfunction(
                impl.function
            ):
                problems.append(
                    f"{caller.name} is an async def: hooks are sync and cheap, return an "
                    "object whose methods are async instead"
                )
            if impl.hookwrapper or impl.wrapper:
                problems.append(
                    f"{caller.name} is a wrapper: the kernel calls each implementation "
                    "itself, so wrappers would never run"
                )
    if problems:
        raise pluggy.PluginValidationError(plugin, "; ".join(problems))


def _failed(
    name: str, exc: BaseException, dist: str | None, version: str | None, stage: str
) -> PluginStatus:
    error = f"{type(exc).__name__}: {exc}"
    log.warning("llmkernel.plugin.failed", plugin=name, stage=stage, error=error)
    return PluginStatus(name=name, status="failed", distribution=dist, version=version, error=error)


Mode = Literal["each", "strict", "first", "all"]


class Hooks:
    """Calls a kernel's hooks with the kernel's error rules, one implementation at a
    time, in pluggy's order (``tryfirst`` first), so a failure names its plugin.

    Every hook call of the kernel goes through :meth:`call`:

    - ``each``: observers (``on_response``, end hooks): every implementation runs; one
      that raises is logged with its plugin's name and the rest still run; what they
      return that is not ``None`` is returned (an end hook's awaitable);
    - ``strict``: every implementation runs; a kernel error passes through, any other
      exception becomes a :class:`~llmkernel.errors.PluginError` naming the plugin;
    - ``first``: firstresult hooks: ``(answer, plugin name)`` of the first non-None
      answer, or ``(None, None)``; errors as ``strict``;
    - ``all``: every non-None answer as ``(answer, plugin name)``; errors as ``strict``.
    """

    __slots__ = ("_order", "_quiet", "idle", "implemented", "manager", "owners")

    def __init__(self, manager: pluggy.PluginManager) -> None:
        self.manager = manager
        #: hooks a plugin (not only the kernel's built-in) implements: the kernel
        #: skips the others entirely, so an unused step costs nothing
        self.owners = {  # each hook's plugins but the built-in (ids)
            name: {id(i.plugin) for i in caller.get_hookimpls() if i.plugin_name != BUILTIN}
            for name, caller in vars(manager.hook).items()
        }
        self.implemented = frozenset(name for name, owners in self.owners.items() if owners)
        #: each hook's implementations in calling order, read once (a kernel's plugins
        #: are all registered before its first call)
        self._order: dict[str, list[Any]] = {}
        #: plugins that say when their hooks would do nothing: ``llmkernel_idle(kernel)``
        self.idle = [
            (1 << bit, plugin, check)
            for bit, plugin in enumerate(manager.get_plugins())
            if callable(check := getattr(plugin, "llmkernel_idle", None))
        ]
        self._quiet = {0: self.implemented}

    def active(self, kernel: Any) -> frozenset[str]:
        """The hooks a call starting now runs: :attr:`implemented` less those only idle
        plugins implement (a check that raises: the plugin is not idle)."""
        key = 0  # a bit per idle plugin
        for bit, _, check in self.idle:
            try:  # noqa: SIM105  (suppress() would cost more than the check, every call)
                key |= bit if check(kernel) else 0
            except Exception:  # a broken check: the plugin is not idle
                pass
        found = self._quiet.get(key)
        if found is None:
            quiet = {id(plugin) for bit, plugin, _ in self.idle if key & bit}
            found = self._quiet[key] = frozenset(n for n, o in self.owners.items() if o - quiet)
        return found

    def impls(self, hook: str) -> list[Any]:
        """The implementations of ``hook`` in the order they are called."""
        order = self._order.get(hook)
        if order is None:
            order = self._order[hook] = list(
                reversed(getattr(self.manager.hook, hook).get_hookimpls())
            )
        return order

    def call(self, hook: str, mode: Mode, **kwargs: Any) -> Any:
        found: list[Any] = _NONE
        impls = self._order.get(hook) or self.impls(hook)
        if mode == "each":
            for impl in impls:
                try:
                    result = impl.function(*[kwargs[arg] for arg in impl.argnames])
                except Exception as exc:
                    log.warning(
                        "llmkernel.plugin.hook_failed",
                        plugin=impl.plugin_name,
                        hook=hook,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                    continue
                if result is not None:
                    found = [*found, result]
            return found
        for impl in impls:
            answer = call_impl(impl, hook, kwargs)
            if answer is None or mode == "strict":
                continue
            if mode == "first":
                return answer, impl.plugin_name
            found = [*found, (answer, impl.plugin_name)]
        if mode == "first":
            return None, None
        return None if mode == "strict" else found


#: what ``each`` and ``all`` return when nothing answered (shared: never appended to)
_NONE: list[Any] = []


def call_impl(impl: Any, hook: str, kwargs: dict[str, Any]) -> Any:
    """One implementation, with the arguments it names. A kernel error passes
    through; any other exception becomes a :class:`PluginError` naming the plugin."""
    try:
        return impl.function(*[kwargs[arg] for arg in impl.argnames])
    except Exception as exc:
        from llmkernel.errors import LLMKernelError, PluginError

        if isinstance(exc, LLMKernelError):
            raise
        raise PluginError(
            f"plugin {impl.plugin_name!r} failed in {hook}: {type(exc).__name__}: {exc}"
        ) from exc
