"""The Kernel: one configured set of plugins and providers, and the API users call.

A call's steps are in :mod:`llmkernel.call` (one :class:`~llmkernel.call.Call` per
request); what the kernel knows about providers and models is
``kernel.models`` (:mod:`llmkernel.models`); close, exit and fork hooks are
``kernel.lifecycle`` (:mod:`llmkernel.lifecycle`); hooks are called through
``kernel.hooks`` (:class:`llmkernel.plugins.Hooks`).

The sync methods run the async ones on the kernel's private event loop, in the
calling thread (see ``_portal.py``): one implementation, two faces.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from llmkernel import convert
from llmkernel._logging import log
from llmkernel.cache import Cache
from llmkernel.call import Call
from llmkernel.config import DEFAULT_STRATEGY, REDIS_URL_ENV, Config
from llmkernel.context import RequestContext
from llmkernel.errors import ConfigError, LLMKernelError, PluginError
from llmkernel.lifecycle import Lifecycle
from llmkernel.models import Models
from llmkernel.plugins import BUILTIN, Hooks, PluginStatus, known_names, load_plugins, new_manager
from llmkernel.provider import Provider
from llmkernel.strategies import StrategyRegistry
from llmkernel.streams import AsyncChatStream, ChatStream
from llmkernel.types import (
    ChatRequest,
    CostEstimate,
    EmbeddingRequest,
    EmbeddingResponse,
    Message,
    ModelInfo,
    Response,
    TokenCount,
    Usage,
)

if TYPE_CHECKING:
    import asyncio

    from llmkernel._portal import Portal

_PORTAL_LOCK = threading.Lock()

Messages = Iterable[Message | Mapping[str, Any]] | str


@attrs.define(eq=False, kw_only=True)
class Setup:
    """Everything one config makes: the plugins loaded for it, their hooks, the
    providers and models, the strategy, cache and gates, and the closers of all that.
    A call keeps the setup it started with (``kernel.reconfigure`` swaps in a new one
    while calls in flight finish on theirs)."""

    config: Config
    plugin_manager: Any
    plugins: list[PluginStatus]
    hooks: Hooks
    lifecycle: Lifecycle = attrs.field(factory=Lifecycle)
    models: Models = attrs.field(default=None)
    strategies: StrategyRegistry = attrs.field(factory=StrategyRegistry)
    strategy: Any = None
    strategy_is_default: bool = True
    cache: Cache | None = None
    gates: list[Any] = attrs.field(factory=list)
    #: calls running on this setup
    active: int = 0

    @property
    def hook(self) -> Any:
        return self.plugin_manager.hook


class _OfSetup:
    """A kernel attribute that is the current setup's (the one being built, while
    plugins configure themselves)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, kernel: Kernel | None, owner: type | None = None) -> Any:
        if kernel is None:
            return self
        return getattr(kernel._building or kernel._setup, self.name)

    def __set__(self, kernel: Kernel, value: Any) -> None:
        setattr(kernel._building or kernel._setup, self.name, value)


class Kernel:
    """One configured set of plugins and providers; the API users call.

    Build it with :meth:`from_config`. Use it as a context manager (``with`` or
    ``async with``) so HTTP clients are closed.
    """

    #: what ``kernel.models`` is made of (a subclass may tolerate broken providers)
    models_class: type[Models] = Models

    config: Config = _OfSetup()  # type: ignore[assignment]
    plugin_manager: Any = _OfSetup()
    plugins: list[PluginStatus] = _OfSetup()  # type: ignore[assignment]
    hook: Any = _OfSetup()
    hooks: Hooks = _OfSetup()  # type: ignore[assignment]
    #: close and exit hooks of the current setup's plugins (``add_closer``,
    #: ``on_exit``, ``on_fork``)
    lifecycle: Lifecycle = _OfSetup()  # type: ignore[assignment]
    models: Models = _OfSetup()  # type: ignore[assignment]
    strategies: StrategyRegistry = _OfSetup()  # type: ignore[assignment]
    strategy: Any = _OfSetup()
    strategy_is_default: bool = _OfSetup()  # type: ignore[assignment]
    cache: Cache | None = _OfSetup()  # type: ignore[assignment]
    gates: list[Any] = _OfSetup()  # type: ignore[assignment]

    def __init__(
        self,
        config: Config | None = None,
        *,
        plugins: Iterable[object] = (),
        entry_points: bool = True,
    ) -> None:
        self._extra = tuple(plugins)
        self._entry_points = entry_points
        self._loop: asyncio.AbstractEventLoop | None = None
        #: the kernel's own hooks (the sync portal, fork), beside its setups'
        self._own = Lifecycle()
        self._own.on_fork(self._after_fork)
        self._building: Setup | None = None
        self._retired: list[Setup] = []
        self._setup = self._build(config or Config())

    def _build(self, config: Config) -> Setup:
        """Load the plugins for ``config``, let them configure themselves, make the
        strategy, cache, gates and every configured provider: a bad config fails
        here, naming what is wrong."""
        manager = new_manager()
        statuses = load_plugins(
            manager, config.plugins, extra=self._extra, entry_points=self._entry_points
        )
        setup = Setup(
            config=config,
            plugin_manager=manager,
            plugins=statuses,
            hooks=Hooks(manager),
            lifecycle=Lifecycle(top=False),
        )
        self._own.children.append(setup.lifecycle)
        self._building = setup
        try:
            self._check_plugin_names()
            setup.models = self.models_class(self, setup)
            for impl in setup.hooks.impls("register_strategies"):
                setup.strategies.plugin = impl.plugin_name
                from llmkernel.plugins import call_impl

                call_impl(
                    impl, "register_strategies", {"kernel": self, "registry": setup.strategies}
                )
            setup.hooks.call("configure", "strict", kernel=self, config=config)
            routing = config.routing
            for name in routing.settings:
                if name not in setup.strategies.names():
                    setup.strategies.create(self, name, {})  # raises: unknown, listing known
            setup.strategy = setup.strategies.create(self, routing.strategy)
            setup.strategy_is_default = routing.strategy == DEFAULT_STRATEGY
            setup.cache = setup.hooks.call("provide_cache", "first", kernel=self)[0]
            setup.gates = self._collect("provide_gate", ("acquire", "release"))
            for name in config.providers:
                setup.models.provider(name)  # validate every configured provider now
        finally:
            self._building = None
        return setup

    def reconfigure(
        self, source: str | os.PathLike[str] | Mapping[str, Any] | Config | None = None
    ) -> None:
        """Apply a changed config atomically: the new one is validated whole first (a
        config that does not validate raises, and nothing changes), then swapped in;
        calls in flight finish on the old one, whose providers and plugin objects
        are closed with the kernel (:meth:`areconfigure` closes them as soon as its
        last call ends)."""
        config = source if isinstance(source, Config) else Config.load(source)
        probe = type(self)(config, plugins=self._extra, entry_points=self._entry_points)
        probe.close()  # it validated the whole config; the real one is built for this kernel
        old, self._setup = self._setup, self._build(config)
        self._retired.append(old)
        log.info("llmkernel.reconfigured", source=config.source)

    async def areconfigure(
        self,
        source: str | os.PathLike[str] | Mapping[str, Any] | Config | None = None,
        *,
        drain: float = 60.0,
    ) -> None:
        """:meth:`reconfigure`, then wait (at most ``drain`` seconds) for the calls
        still on the old config to end and close what it made."""
        import asyncio

        self.reconfigure(source)
        old = self._retired.pop()
        waited = 0.0
        while old.active and waited < drain:
            await asyncio.sleep(0.05)
            waited += 0.05
        await _aclose_setup(old)

    def _collect(self, hook: str, methods: tuple[str, ...]) -> list[Any]:
        """Every non-None answer of a provider hook, checked for ``methods``."""
        found = []
        for answer, plugin in self.hooks.call(hook, "all", kernel=self):
            missing = [m for m in methods if not callable(getattr(answer, m, None))]
            if missing:
                raise PluginError(
                    f"plugin {plugin!r} returned {type(answer).__name__} from "
                    f"{hook}, which has no {', '.join(missing)} method"
                )
            found.append(answer)
        return found

    def _check_plugin_names(self) -> None:
        """Refuse config that names a plugin nobody installed (a typo, usually)."""
        import difflib

        known = known_names(self.plugins)
        settings = self.config.plugins
        named = [
            *((n, f"[plugin.{n}]") for n in self.config.plugin),
            *((n, "[plugins] disabled / LLMKERNEL_DISABLE_PLUGINS") for n in settings.disabled),
            *((n, "[plugins] enabled / LLMKERNEL_LOAD_PLUGINS") for n in settings.enabled),
        ]
        if self.config.redis:
            named.append(("redis", f"[redis] / {REDIS_URL_ENV} (shared state)"))
        installed: set[str] = set()
        for name, where in named:
            if name in known:
                continue
            if not installed:
                from llmkernel._entry_points import entry_points
                from llmkernel.plugins import ENTRY_POINT_GROUP

                installed = {ep.name for ep in entry_points(ENTRY_POINT_GROUP)} or {BUILTIN}
                known = sorted({*known, *installed})
            if name in known:
                continue
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{where} in {self.config.source} names plugin {name!r}, which is not "
                f"installed (installed: {', '.join(known)}){hint}"
            )

    @functools.cached_property
    def _portal(self) -> Portal:
        """Where sync calls run: made at the first (``llmkernel._portal`` and asyncio
        are imported then, not by ``import llmkernel`` or ``from_config()``), once
        even when two threads make their first sync call together."""
        with _PORTAL_LOCK:
            portal: Portal | None = self.__dict__.get("_portal")
            if portal is None:
                from llmkernel._portal import Portal

                portal = self.__dict__["_portal"] = Portal()
                self._own.on_exit(portal.stop)
                self._own.on_fork(portal.forget)
        return portal

    def _after_fork(self) -> None:
        """In a forked child: the parent's loop and pooled connections are not ours."""
        from llmkernel.context import new_ids

        new_ids()
        self._loop = None
        for setup in (*self._retired, self._setup):
            setup.models.forget_providers()

    def _bind_loop(self) -> None:
        """A kernel's HTTP clients belong to the loop that first used it."""
        # asyncio is loaded (a loop is running), yet not imported here: `import
        # llmkernel` and from_config() go without it, and an import per call costs more
        loop = sys.modules["asyncio"].get_running_loop()
        if self._loop is not loop:  # the common case costs this one comparison
            if self._loop is not None and not self._loop.is_closed():
                raise LLMKernelError(
                    "a Kernel is bound to the event loop it first ran on; create one per "
                    "loop (or use the sync API from any thread)"
                )
            self._loop = loop

    @classmethod
    def from_config(
        cls,
        source: str | os.PathLike[str] | Mapping[str, Any] | Config | None = None,
        *,
        plugins: Iterable[object] = (),
        entry_points: bool = True,
    ) -> Kernel:
        """Build a kernel from a TOML path, a dict, a :class:`Config`, or ``None`` to
        search the usual places (see :mod:`llmkernel.config`)."""
        config = source if isinstance(source, Config) else Config.load(source)
        return cls(config, plugins=plugins, entry_points=entry_points)

    def __repr__(self) -> str:
        loaded = [p.name for p in self.plugins if p.status == "loaded"]
        return f"<Kernel config={self.config.source!r} plugins={loaded!r}>"

    # ------------------------------------------------------------------ providers

    def provider(self, name: str) -> Provider:
        """The provider instance ``name`` (see :meth:`llmkernel.models.Models.provider`)."""
        return self.models.provider(name)

    def providers(self) -> dict[str, Provider]:
        """Every configured provider instance, and any created since."""
        for name in self.config.providers:
            self.models.provider(name)
        return self.models.created()

    # ------------------------------------------------------------------ requests

    def build_request(
        self, model: str | None = None, messages: Messages = (), **fields: Any
    ) -> ChatRequest:
        """Check user input and build a :class:`ChatRequest`
        (:func:`llmkernel.convert.chat_request` names every field: ``tools``,
        ``tool_choice``, ``max_tokens``, ``temperature``, ``top_p``, ``stop``,
        ``response_format``, ``reasoning``, ``user``, ``metadata``, ``options``);
        anything wrong is an :class:`~llmkernel.errors.InvalidRequestError` naming the
        field and value, before anything is sent. ``metadata`` says who is asking
        (never sent upstream). Provider-specific extras go in ``options={...}`` (or
        as extra keyword arguments) and pass through unchanged. Every call method
        takes a built request in place of ``model``."""
        return convert.chat_request(
            self.models.default_model if model is None else model, messages, **fields
        )

    def _chat_request(self, model: Any, messages: Messages, kwargs: dict[str, Any]) -> ChatRequest:
        if isinstance(model, ChatRequest):
            if kwargs or messages:
                raise convert.invalid(
                    "request", "a built ChatRequest takes no other arguments than timeout"
                )
            return model
        return self.build_request(model, messages, **kwargs)

    # ------------------------------------------------------------------ calls

    async def achat(
        self,
        model: str | ChatRequest | None = None,
        messages: Messages = (),
        *,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Response:
        """Send a chat request; see :meth:`build_request` for the arguments.
        ``timeout`` bounds the whole call (every attempt and wait)."""
        request = self._chat_request(model, messages, kwargs)
        return await Call(self, RequestContext.new(self, "chat", request, timeout)).chat()

    def chat(
        self,
        model: str | ChatRequest | None = None,
        messages: Messages = (),
        *,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Response:
        """Sync :meth:`achat`."""
        ctx = RequestContext.new(self, "chat", self._chat_request(model, messages, kwargs), timeout)
        return self._portal.call(Call(self, ctx).chat())

    def astream(
        self,
        model: str | ChatRequest | None = None,
        messages: Messages = (),
        *,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> AsyncChatStream:
        """Stream a chat: iterate the returned object with ``async for``; its
        ``response`` holds the final response once the stream ends."""
        return AsyncChatStream(self, self._chat_request(model, messages, kwargs), timeout)

    def stream(
        self,
        model: str | ChatRequest | None = None,
        messages: Messages = (),
        **kwargs: Any,
    ) -> ChatStream:
        """Sync :meth:`astream`: iterate with ``for``."""
        return ChatStream(self, self.astream(model, messages, **kwargs))

    def build_embedding_request(
        self,
        model: str | None = None,
        input: str | Iterable[str] | None = (),
        **kwargs: Any,
    ) -> EmbeddingRequest:
        """Check and build an :class:`EmbeddingRequest`, naming any bad field."""
        return convert.embedding_request(model, input, **kwargs)

    async def aembed(
        self,
        model: str | EmbeddingRequest | None = None,
        input: str | Iterable[str] | None = (),
        *,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> EmbeddingResponse:
        """Embed one text or many; one vector per input, in order."""
        if isinstance(model, EmbeddingRequest):
            request = model
        else:
            request = convert.embedding_request(model, input, **kwargs)
        return await Call(self, RequestContext.new(self, "embed", request, timeout)).embed()

    def embed(
        self,
        model: str | EmbeddingRequest | None = None,
        input: str | Iterable[str] | None = (),
        **kwargs: Any,
    ) -> EmbeddingResponse:
        """Sync :meth:`aembed`."""
        return self._portal.call(self.aembed(model, input, **kwargs))

    # ------------------------------------------------------------------ models and stats

    async def alist_models(self, provider: str | None = None) -> list[ModelInfo]:
        """The models ``provider`` (or every configured provider) serves, asked of
        each over the network; a provider that fails is logged and skipped when
        listing all, raised when asked by name."""
        if provider is not None:
            return list(await self.models.provider(provider).list_models())
        found: list[ModelInfo] = []
        for name, instance in self.providers().items():
            try:
                found.extend(await instance.list_models())
            except LLMKernelError as exc:
                log.warning("llmkernel.list_models.failed", provider=name, error=str(exc))
        return found

    def list_models(self, provider: str | None = None) -> list[ModelInfo]:
        """Sync :meth:`alist_models`."""
        return self._portal.call(self.alist_models(provider))

    def stats(self) -> dict[str, Any]:
        """Every ``collect_stats`` answer merged, dict into dict: per deployment under
        ``"deployments"`` (``"provider/model"``), plugins' own sections beside."""
        merged: dict[str, Any] = {"deployments": {}}
        for impl in self.hooks.impls("collect_stats"):
            try:
                part = impl.function(*[{"kernel": self}[a] for a in impl.argnames])
            except Exception as exc:
                log.warning(
                    "llmkernel.plugin.hook_failed",
                    plugin=impl.plugin_name,
                    hook="collect_stats",
                    error=f"{type(exc).__name__}: {exc}",
                )
                continue
            if isinstance(part, Mapping):
                _merge(merged, part)
        return merged

    # ------------------------------------------------------------------ tokens and money

    def count_tokens(
        self, model: str | ChatRequest | None = None, messages: Messages = (), **kwargs: Any
    ) -> TokenCount:
        """Input tokens of a request for ``model``'s first candidate; ``exact`` says
        whether it is a real tokenizer's count or an estimate."""
        request = self._chat_request(model, messages, kwargs)
        return self.models.count(request, self.models.resolve(request.model)[0])

    def estimate_cost(
        self,
        model: str | ChatRequest | None = None,
        messages: Messages = (),
        *,
        output_tokens: int | None = None,
        **kwargs: Any,
    ) -> CostEstimate:
        """What sending ``messages`` to ``model``'s first candidate may cost: the
        worst case (input bounded from above, plus ``max_tokens`` or the model's
        maximum output, billed the dearest way) and a typical case (``output_tokens``
        if given, else a quarter of that maximum). Unpriced models give ``None``."""
        request = self._chat_request(model, messages, kwargs)
        candidate = self.models.resolve(request.model)[0]
        ctx = RequestContext.new(self, "chat", request)
        count = ctx.token_count(candidate)
        most = ctx.max_output_tokens(candidate)
        typical_out = output_tokens if output_tokens is not None else max(1, most // 4)
        typical = self.models.cost(
            candidate, Usage(input_tokens=count.tokens, output_tokens=typical_out)
        )
        return CostEstimate(
            model=candidate.qualified,
            worst=ctx.worst_case_cost(candidate),
            typical=typical,
            input_tokens=count.tokens,
            input_exact=count.exact,
            max_output_tokens=most,
            typical_output_tokens=typical_out,
        )

    # ------------------------------------------------------------------ lifecycle

    def _setups(self) -> list[Setup]:
        return [*self._retired, self._setup]

    async def aclose(self) -> None:
        """Close every provider's HTTP client (a provider opens a new one if used
        again), then the plugins' objects (``aclose()`` of the cache, gates and
        strategy) and closers (``kernel.lifecycle.add_closer``), each failure logged;
        for every config the kernel had (:meth:`reconfigure`)."""
        for setup in self._setups():
            await _aclose_setup(setup)
        self._retired.clear()
        self._own.closed = True

    def close(self) -> None:
        """Sync :meth:`aclose`; also closes the sync API's event loop."""
        if "_portal" in self.__dict__ and self._portal.started:
            self._portal.stop(final=self.aclose)
            return
        if self._loop is None:
            # nothing ever ran on a loop: nothing is bound to one, so the sync closers
            # run here without asyncio, and an async aclose has nothing to release
            for setup in self._setups():
                for name, close in _closing(setup):
                    try:
                        result = close()
                    except Exception as exc:
                        _close_failed(name, exc)
                        continue
                    if inspect.iscoroutine(result):
                        result.close()
                setup.lifecycle.closed = True
            self._retired.clear()
            self._own.closed = True
            return
        import asyncio

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(self.aclose())
            return
        raise RuntimeError(
            "Kernel.close() was called inside a running event loop: use `async with kernel` "
            "or `await kernel.aclose()` in async code"
        )

    async def __aenter__(self) -> Kernel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> Kernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _closing(setup: Setup) -> list[tuple[str, Callable[[], Any]]]:
    """What closing a setup runs, in order: providers, plugin objects, closers."""
    owned: list[tuple[str, Callable[[], Any]]] = [
        (p.name, p.aclose) for p in setup.models.created().values()
    ]
    for thing in (setup.cache, *setup.gates, setup.strategy):
        close = getattr(thing, "aclose", None)
        if callable(close):
            owned.append((type(thing).__name__, close))
    owned.extend(
        (getattr(c, "__qualname__", "closer"), c) for c in reversed(setup.lifecycle.closers)
    )
    return owned


async def _aclose_setup(setup: Setup) -> None:
    for name, close in _closing(setup):
        try:
            result = close()
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            _close_failed(name, exc)
    setup.lifecycle.closed = True


def _close_failed(name: str, exc: Exception) -> None:
    log.warning("llmkernel.close_failed", what=name, error=f"{type(exc).__name__}: {exc}")


def _merge(into: dict[str, Any], part: Mapping[str, Any]) -> None:
    for key, value in part.items():
        mine = into.get(key)
        if isinstance(mine, dict) and isinstance(value, Mapping):
            _merge(mine, value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


__all__ = ["AsyncChatStream", "ChatStream", "Kernel"]
