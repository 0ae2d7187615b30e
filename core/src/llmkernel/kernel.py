"""The Kernel: the public API users call, the providers, and the plugins' view.

The request pipeline itself, step by step, is in :mod:`llmkernel.pipeline`; this
module holds what is not a step: building requests from user input, resolving
model strings into candidates, prices and token counts, plugin objects (gates,
strategy, cache), statistics, and the lifecycle.

The sync methods run the async ones on the kernel's private event loop, in the
calling thread (see ``_portal.py``): one implementation, two faces.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from llmkernel import convert, pipeline
from llmkernel._logging import log
from llmkernel.cache import Cache
from llmkernel.config import DEFAULT_STRATEGY, OFFLINE_DEFAULT_MODEL, REDIS_URL_ENV, Config
from llmkernel.context import RequestContext
from llmkernel.errors import ConfigError, LLMKernelError, NoProviderError, PluginError
from llmkernel.lifecycle import Lifecycle
from llmkernel.plugins import (
    BUILTIN,
    PluginStatus,
    call_each_strict,
    call_impl,
    first_result,
    known_names,
    load_plugins,
    new_manager,
)
from llmkernel.provider import Provider, ProviderConfig
from llmkernel.routing import Candidate
from llmkernel.strategies import StrategyRegistry
from llmkernel.types import (
    Capabilities,
    ChatRequest,
    CostEstimate,
    EmbeddingRequest,
    EmbeddingResponse,
    Message,
    ModelInfo,
    Reasoning,
    Response,
    ResponseFormat,
    StreamEvent,
    TokenCount,
    Tool,
    ToolChoice,
    Usage,
    replace,
)

if TYPE_CHECKING:
    import asyncio

    from llmkernel._portal import Portal

T = TypeVar("T")
_announced_default = False
#: Request ids: random per process (unique across processes sharing a ledger), then
#: a counter (cheap per call).
_ID_PREFIX = os.urandom(6).hex()
_ids = itertools.count(1)


_PORTAL_LOCK = threading.Lock()


def _new_ids() -> None:
    """Request ids of a forked child are its own."""
    global _ID_PREFIX, _ids
    _ID_PREFIX = os.urandom(6).hex()
    _ids = itertools.count(1)


#: Model strings remembered with their candidates (a gateway sees arbitrary ones).
_RESOLVED_MAX = 1024
#: Hooks the pipeline skips entirely while only the kernel implements them.
_OPTIONAL_HOOKS = (
    "on_request",
    "filter_candidates",
    "select_provider",
    "on_error",
    "on_response",
    "on_attempt_end",
    "on_request_end",
)


class Kernel:
    """One configured set of plugins and providers; the API users call.

    Build it with :meth:`from_config`. Use it as a context manager (``with`` or
    ``async with``) so HTTP clients are closed.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        plugins: Iterable[object] = (),
        entry_points: bool = True,
    ) -> None:
        self.config = config or Config()
        self.plugin_manager = new_manager()
        self.plugins: list[PluginStatus] = load_plugins(
            self.plugin_manager, self.config.plugins, extra=plugins, entry_points=entry_points
        )
        self.hook = self.plugin_manager.hook
        self._installed_names: set[str] = set()
        self._check_plugin_names()
        self._providers: dict[str, Provider] = {}
        self.provider_plugins: dict[str, str] = {}  # provider instance -> plugin name
        self._resolved: dict[str, list[Candidate]] = {}  # model string -> candidates
        self._unhealthy: dict[str, float] = {}
        self._prices: dict[tuple[str, str, str], Any] = {}
        self._capabilities: dict[Candidate, Capabilities | None] = {}
        self.lifecycle = Lifecycle()
        self.lifecycle.on_fork(self._after_fork)
        self.claimed_options: frozenset[str] = frozenset()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: hooks a plugin (not only the kernel) implements; the pipeline skips the rest
        self.hooked = frozenset(
            name
            for name in _OPTIONAL_HOOKS
            if any(i.plugin_name != BUILTIN for i in getattr(self.hook, name).get_hookimpls())
        )
        self.strategies = StrategyRegistry()
        for impl in reversed(self.hook.register_strategies.get_hookimpls()):
            self.strategies.plugin = impl.plugin_name
            call_impl(impl, "register_strategies", {"kernel": self, "registry": self.strategies})
        call_each_strict(self.plugin_manager, "configure", kernel=self, config=self.config)
        routing = self.config.routing
        for name in routing.settings:
            if name not in self.strategies.names():
                self.strategies.create(self, name, {})  # raises: unknown, listing known
        self.strategy = self.make_strategy(routing.strategy)
        self.strategy_is_default = routing.strategy == DEFAULT_STRATEGY
        self.cache: Cache | None = self.hook.provide_cache(kernel=self)
        self.gates: list[Any] = self._collect("provide_gate", ("acquire", "release"))
        for name in self.config.providers:
            self.provider(name)  # validate every configured provider now

    def _collect(self, hook: str, methods: tuple[str, ...]) -> list[Any]:
        """Every non-None answer of a provider hook, checked for ``methods``."""
        found = []
        for impl in reversed(getattr(self.hook, hook).get_hookimpls()):
            answer = call_impl(impl, hook, {"kernel": self})
            if answer is None:
                continue
            missing = [m for m in methods if not callable(getattr(answer, m, None))]
            if missing:
                raise PluginError(
                    f"plugin {impl.plugin_name!r} returned {type(answer).__name__} from "
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
        for name, where in named:
            if name in known:
                continue
            if not self._installed_names:
                from llmkernel._entry_points import entry_points
                from llmkernel.plugins import ENTRY_POINT_GROUP

                eps = entry_points(ENTRY_POINT_GROUP)
                self._installed_names = {ep.name for ep in eps}
                known = sorted({*known, *self._installed_names})
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
                self.lifecycle.on_exit(portal.stop)
                self.lifecycle.on_fork(portal.forget)
        return portal

    def _after_fork(self) -> None:
        """In a forked child: the parent's loop and pooled connections are not ours."""
        _new_ids()
        self._loop = None
        self._providers.clear()

    def has_hook(self, name: str) -> bool:
        """Whether a plugin (not only the kernel) implements hook ``name``."""
        return name in self.hooked

    def claim_options(self, *names: str) -> None:
        """Request options a plugin reads itself (``cache=False``, ``cache_ttl=60``):
        the kernel keeps them on ``ctx.request`` for plugins and strips them from
        the request providers receive."""
        self.claimed_options = self.claimed_options | frozenset(names)

    def routed(self, request: Any, model: str) -> Any:
        """``request`` as a provider receives it: its model id, claimed options gone."""
        claimed = self.claimed_options
        if claimed and request.options and not claimed.isdisjoint(request.options):
            options = {k: v for k, v in request.options.items() if k not in claimed}
            return replace(request, model=model, options=options)
        return replace(request, model=model)

    def add_closer(self, closer: Callable[[], Any]) -> None:
        """Run ``closer()`` (sync, or returning an awaitable) in :meth:`aclose`."""
        self.lifecycle.add_closer(closer)

    def on_exit(self, hook: Callable[[], Any]) -> None:
        """Run ``hook()`` (sync, quick, no executor) at interpreter exit if the kernel
        was not closed: how a ledger commits what is queued when a script never
        closes its kernel. See :mod:`llmkernel.lifecycle`."""
        self.lifecycle.on_exit(hook)

    def on_fork(self, hook: Callable[[], Any]) -> None:
        """Run ``hook()`` in a child made by ``os.fork`` (drop the parent's threads,
        connections and leases there)."""
        self.lifecycle.on_fork(hook)

    def make_strategy(self, name: str, settings: Mapping[str, Any] | None = None) -> Any:
        """Build the strategy ``name`` (its settings default to ``[routing.<name>]``);
        strategies that order within groups (tiers) build others with it."""
        if settings is None:
            settings = self.config.routing.settings.get(name, {})
        return self.strategies.create(self, name, settings)

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
        """The provider instance ``name``, created on first use.

        A name with a ``[providers.<name>]`` table uses it; any other name is tried
        as a provider type with default settings (``openai/gpt-4o`` works with no
        config when llmkernel-openai is installed).
        """
        existing = self._providers.get(name)
        if existing is not None:
            return existing
        section = self.config.providers.get(name)
        if section is not None:
            ptype, options, where = section.type, section.options, section.where
        else:
            ptype, options, where = name, {}, f"[providers.{name}] (defaults)"
        config = ProviderConfig(
            name=name,
            type=ptype,
            options=options,
            where=where,
            transport=self.hook.provide_transport(kernel=self, provider=name),
            lifecycle=self.lifecycle,
        )
        provider, plugin = first_result(
            self.plugin_manager, "provide_chat", kernel=self, config=config
        )
        if provider is not None and not isinstance(provider, Provider):
            raise PluginError(
                f"plugin {plugin!r} returned {type(provider).__name__} from provide_chat; "
                "it must return a llmkernel.provider.Provider"
            )
        if plugin is not None:
            self.provider_plugins[name] = plugin
        if provider is None:
            raise NoProviderError(self._no_provider_message(name, config.type, section is None))
        self._providers[name] = provider
        return provider

    def _no_provider_message(self, name: str, ptype: str, implicit: bool) -> str:
        from llmkernel.plugins import unavailable_reason

        known = sorted(set(self.config.providers) | set(self._providers))
        what = f"provider {name!r}" if implicit else f"provider type {ptype!r} (for {name!r})"
        hint = f"; configured providers: {', '.join(known)}" if known else ""
        reason = unavailable_reason(ptype, self.plugins, self.config)
        if reason is not None:
            return f"no installed plugin serves {what}: {reason}{hint}"
        fix = (
            f"add a [providers.{name}] table with a known type"
            if implicit
            else f"set a known type in [providers.{name}]"
        )
        return f"no installed plugin serves {what}: install llmkernel-{ptype} or {fix}{hint}"

    def providers(self) -> dict[str, Provider]:
        """Every configured provider instance, and any created since."""
        for name in self.config.providers:
            self.provider(name)
        return dict(self._providers)

    @property
    def default_model(self) -> str:
        """The model used when a call names none: config or ``$LLMKERNEL_DEFAULT_MODEL``,
        else the offline mock (announced once)."""
        global _announced_default
        if self.config.default_model:
            return self.config.default_model
        if not _announced_default:
            _announced_default = True
            log.warning(
                "llmkernel.default_model.mock",
                model=OFFLINE_DEFAULT_MODEL,
                note="no default_model configured; using the offline mock provider",
            )
        return OFFLINE_DEFAULT_MODEL

    # ------------------------------------------------------------------ routing

    def resolve(self, model: str) -> list[Candidate]:
        """The candidates for ``model`` (``provider/model``, alias or group), in config
        order, before filters and the strategy."""
        if not isinstance(model, str) or not model:
            raise convert.invalid(
                "model", f'must be a non-empty "provider/model" string or alias, not {model!r}'
            )
        targets = self.config.model_targets.get(model)
        if targets is None:
            if "/" not in model:
                aliases = ", ".join(sorted(self.config.models)) or "none configured"
                raise NoProviderError(
                    f'model {model!r} is neither "provider/model" nor an alias (aliases: {aliases})'
                )
            pairs: list[tuple[str, Mapping[str, Any]]] = [(model, {})]
        else:
            pairs = [(t.target, t.tags) for t in targets]
        candidates = []
        for target, tags in pairs:
            provider_name, _, model_id = target.partition("/")
            if not provider_name or not model_id:
                raise NoProviderError(f'model {target!r} is not "provider/model"')
            if (
                not self.config.routing.implicit_providers
                and provider_name not in self.config.providers
            ):
                raise NoProviderError(
                    f"provider {provider_name!r} (in model {model!r}) is not configured, and "
                    "[routing] implicit_providers = false allows only [providers.<name>] tables"
                )
            provider = self.provider(provider_name)
            candidates.append(
                Candidate(
                    provider=provider_name, model=model_id, provider_type=provider.type, tags=tags
                )
            )
        return candidates

    def candidates_for(self, model: str) -> list[Candidate]:
        """:meth:`resolve`, remembered per model string (a bounded number of them)."""
        candidates = self._resolved.get(model)
        if candidates is None:
            candidates = self.resolve(model)
            if len(self._resolved) >= _RESOLVED_MAX:
                self._resolved.pop(next(iter(self._resolved)))
            self._resolved[model] = candidates
        return candidates

    def checked_candidates(self, chosen: Any, given: list[Candidate], who: str) -> list[Candidate]:
        """A strategy's answer, checked: a list of the candidates it was given."""
        if chosen is None:
            return list(given)
        if not isinstance(chosen, list | tuple) or not all(
            isinstance(c, Candidate) for c in chosen
        ):
            raise PluginError(
                f"{who} returned {type(chosen).__name__}: it must return a list of the "
                "Candidate objects it was given"
            )
        strangers = [c.qualified for c in chosen if c not in given]
        if strangers:
            raise PluginError(f"{who} returned candidates it was not given: {', '.join(strangers)}")
        return list(chosen)

    def healthy_first(self, candidates: list[Candidate]) -> list[Candidate]:
        """Candidates marked unhealthy (bad credentials) moved to the back."""
        if not self._unhealthy:
            return candidates
        now = time.monotonic()
        healthy = [c for c in candidates if self._unhealthy.get(c.provider, 0.0) <= now]
        return healthy + [c for c in candidates if c not in healthy]

    def capabilities(self, candidate: Candidate) -> Capabilities | None:
        """What the candidate's model can do, from its provider (remembered)."""
        if candidate in self._capabilities:
            return self._capabilities[candidate]
        try:
            caps = self.provider(candidate.provider).capabilities(candidate.model)
        except Exception as exc:
            log.warning(
                "llmkernel.provider.capabilities_failed",
                provider=candidate.provider,
                error=f"{type(exc).__name__}: {exc}",
            )
            caps = None
        self._capabilities[candidate] = caps
        return caps

    def mark_unhealthy(self, provider: str, seconds: float | None = None) -> None:
        """Move ``provider`` to the back of every candidate list for a while."""
        self._unhealthy[provider] = time.monotonic() + (
            self.config.retry.unhealthy_cooldown if seconds is None else seconds
        )

    # ------------------------------------------------------------------ requests

    def build_request(
        self,
        model: str | None = None,
        messages: Iterable[Message | Mapping[str, Any]] | str = (),
        *,
        tools: Iterable[Tool | Mapping[str, Any]] | None = None,
        tool_choice: ToolChoice | str | Mapping[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Iterable[str] | None = None,
        response_format: ResponseFormat | Mapping[str, Any] | None = None,
        reasoning: Reasoning | str | Mapping[str, Any] | None = None,
        user: str | None = None,
        metadata: Mapping[str, str] | None = None,
        options: Mapping[str, Any] | None = None,
        **extra: Any,
    ) -> ChatRequest:
        """Check user input and build a :class:`ChatRequest`; anything wrong is an
        :class:`~llmkernel.errors.InvalidRequestError` naming the field and value,
        before anything is sent. ``metadata`` says who is asking (never sent
        upstream). Provider-specific extras go in ``options={...}`` (or as extra
        keyword arguments) and pass through unchanged."""
        if model is None:
            model = self.default_model
        elif not isinstance(model, str) or not model:
            raise convert.invalid(
                "model", f'must be a non-empty "provider/model" string or alias, not {model!r}'
            )
        offered = convert.tool_list(tools) if tools is not None else ()
        return ChatRequest(
            model=model,
            messages=convert.message_list(messages),
            tools=offered,
            tool_choice=(
                convert.checked_tool_choice(tool_choice, offered)
                if tool_choice is not None
                else None
            ),
            max_tokens=(
                convert.positive_int(max_tokens, "max_tokens") if max_tokens is not None else None
            ),
            temperature=(
                convert.number(temperature, "temperature", 0.0, 2.0)
                if temperature is not None
                else None
            ),
            top_p=convert.number(top_p, "top_p", 0.0, 1.0) if top_p is not None else None,
            stop=convert.stops(stop) if stop is not None else (),
            response_format=convert.response_format(response_format),
            reasoning=convert.reasoning(reasoning),
            user=convert.text_or_none(user, "user"),
            options=(
                {**convert.options(options), **convert.extras(extra)}
                if options is not None or extra
                else {}
            ),
            metadata=convert.metadata(metadata) if metadata else {},
        )

    # ------------------------------------------------------------------ calls

    def new_context(
        self,
        kind: Any,
        request: ChatRequest | EmbeddingRequest,
        timeout: float | None = None,
    ) -> RequestContext:
        """The context of one call; ``timeout`` (seconds) bounds the whole call,
        default ``[retry] timeout``."""
        if timeout is None:
            timeout = self.config.retry.timeout
        elif isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise convert.invalid(
                "timeout", f"must be a positive number of seconds, not {timeout!r}"
            )
        now = time.monotonic()
        return RequestContext(
            id=f"req_{_ID_PREFIX}{next(_ids):x}",
            kind=kind,
            kernel=self,
            request=request,
            started=now,
            deadline=now + timeout,
        )

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

    async def achat(
        self,
        model: str | None = None,
        messages: Iterable[Message | Mapping[str, Any]] | str = (),
        *,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Response:
        """Send a chat request; see :meth:`build_request` for the arguments.
        ``timeout`` bounds the whole call (every attempt and wait)."""
        request = self.build_request(model, messages, **kwargs)
        self._bind_loop()
        return await pipeline.run_chat(self, self.new_context("chat", request, timeout))

    def chat(
        self,
        model: str | None = None,
        messages: Iterable[Message | Mapping[str, Any]] | str = (),
        **kwargs: Any,
    ) -> Response:
        """Sync :meth:`achat`."""
        return self._portal.call(self.achat(model, messages, **kwargs))

    async def run_chat(self, request: ChatRequest, timeout: float | None = None) -> Response:
        """The pipeline for a request already built (the gateway's way in)."""
        self._bind_loop()
        return await pipeline.run_chat(self, self.new_context("chat", request, timeout))

    def astream(
        self,
        model: str | None = None,
        messages: Iterable[Message | Mapping[str, Any]] | str = (),
        *,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> AsyncChatStream:
        """Stream a chat: iterate the returned object with ``async for``; its
        ``response`` holds the final response once the stream ends."""
        return AsyncChatStream(self, self.build_request(model, messages, **kwargs), timeout)

    def stream(
        self,
        model: str | None = None,
        messages: Iterable[Message | Mapping[str, Any]] | str = (),
        **kwargs: Any,
    ) -> ChatStream:
        """Sync :meth:`astream`: iterate with ``for``."""
        return ChatStream(self, self.astream(model, messages, **kwargs))

    def build_embedding_request(
        self,
        model: str | None = None,
        input: str | Iterable[str] | None = (),
        *,
        dimensions: int | None = None,
        metadata: Mapping[str, str] | None = None,
        options: Mapping[str, Any] | None = None,
        **extra: Any,
    ) -> EmbeddingRequest:
        """Check and build an :class:`EmbeddingRequest`, naming any bad field."""
        if model is None or model == "":
            raise convert.invalid("model", "an embedding model is required (provider/model)")
        if not isinstance(model, str):
            raise convert.invalid("model", f'must be a "provider/model" string, not {model!r}')
        if input is None or not isinstance(input, str | Iterable):
            raise convert.invalid("input", f"must be a text or a list of texts, not {input!r}")
        inputs = (input,) if isinstance(input, str) else tuple(input)
        if not inputs:
            raise convert.invalid("input", "at least one text to embed is needed")
        for index, text in enumerate(inputs):
            if not isinstance(text, str):
                raise convert.invalid(f"input[{index}]", f"must be a string, not {text!r}")
        if dimensions is not None and (
            isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1
        ):
            raise convert.invalid("dimensions", f"must be a positive integer, not {dimensions!r}")
        return EmbeddingRequest(
            model=model,
            inputs=inputs,
            dimensions=dimensions,
            options={**convert.options(options), **extra},
            metadata=convert.metadata(metadata),
        )

    async def aembed(
        self,
        model: str | None = None,
        input: str | Iterable[str] | None = (),
        *,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> EmbeddingResponse:
        """Embed one text or many; one vector per input, in order."""
        request = self.build_embedding_request(model, input, **kwargs)
        self._bind_loop()
        return await pipeline.run_embed(self, self.new_context("embed", request, timeout))

    def embed(
        self,
        model: str | None = None,
        input: str | Iterable[str] | None = (),
        **kwargs: Any,
    ) -> EmbeddingResponse:
        """Sync :meth:`aembed`."""
        return self._portal.call(self.aembed(model, input, **kwargs))

    def abatch(
        self, requests: Iterable[Any], *, concurrency: int = 8, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """Run many requests concurrently, yielding results as they complete (the
        ``llmkernel-batch`` package; see docs/batch.md)."""
        try:
            from llmkernel_batch.runner import abatch
        except ImportError:
            raise LLMKernelError(
                "Kernel.abatch needs llmkernel-batch: pip install llmkernel-batch"
            ) from None
        result: AsyncIterator[Any] = abatch(self, requests, concurrency=concurrency, **kwargs)
        return result

    # ------------------------------------------------------------------ models and stats

    async def alist_models(self, provider: str | None = None) -> list[ModelInfo]:
        """The models ``provider`` (or every configured provider) serves, asked of
        each over the network; a provider that fails is logged and skipped when
        listing all, raised when asked by name."""
        if provider is not None:
            return list(await self.provider(provider).list_models())
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
        for impl in reversed(self.hook.collect_stats.get_hookimpls()):
            args = {"kernel": self}
            try:
                part = impl.function(*[args[a] for a in impl.argnames])
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
        self,
        model: str | None = None,
        messages: Iterable[Message | Mapping[str, Any]] | str = (),
        **kwargs: Any,
    ) -> TokenCount:
        """Input tokens of a request for ``model``'s first candidate; ``exact`` says
        whether it is a real tokenizer's count or an estimate."""
        request = self.build_request(model, messages, **kwargs)
        return self.count_request_tokens(request, self.candidates_for(request.model)[0])

    def count_request_tokens(
        self, request: ChatRequest | EmbeddingRequest, candidate: Candidate
    ) -> TokenCount:
        """``count_tokens`` hooks for ``request`` on ``candidate`` (the model to count
        for is the ``model`` argument; ``request.model`` stays as asked)."""
        result, plugin = first_result(
            self.plugin_manager,
            "count_tokens",
            kernel=self,
            request=request,
            provider_type=candidate.provider_type,
            model=candidate.model,
        )
        if not isinstance(result, TokenCount):
            raise PluginError(
                f"plugin {plugin!r} returned {type(result).__name__} from count_tokens; it "
                "must return a llmkernel.types.TokenCount"
            )
        return result

    def price(self, candidate: Candidate) -> Any:
        """The price of a candidate's model: config ``[prices]`` by instance name, then
        by provider type, then ``price_model`` plugins. ``None`` when unpriced; a
        failing plugin is logged and leaves the model unpriced. A price is a
        :class:`~llmkernel.types.ModelPrice` or any object with ``cost(usage)``."""
        key = (candidate.provider, candidate.provider_type, candidate.model)
        if key in self._prices:
            return self._prices[key]
        prices = self.config.prices
        price = prices.get(candidate.qualified) or prices.get(
            f"{candidate.provider_type}/{candidate.model}"
        )
        if price is None:
            try:
                price, _ = first_result(
                    self.plugin_manager,
                    "price_model",
                    kernel=self,
                    provider_type=candidate.provider_type,
                    model=candidate.model,
                    candidate=candidate,
                )
            except PluginError as exc:  # unpriced this time; asked again next call
                log.warning("llmkernel.plugin.hook_failed", hook="price_model", error=str(exc))
                return None
        self._prices[key] = price
        return price

    def cost(self, candidate: Candidate, usage: Usage) -> Decimal | None:
        price = self.price(candidate)
        return price.cost(usage) if price is not None else None

    def estimate_cost(
        self,
        model: str | None = None,
        messages: Iterable[Message | Mapping[str, Any]] | str = (),
        *,
        output_tokens: int | None = None,
        **kwargs: Any,
    ) -> CostEstimate:
        """What sending ``messages`` to ``model``'s first candidate may cost: the
        worst case (counted input plus ``max_tokens`` or the model's maximum
        output, billed the dearest way) and a typical case (``output_tokens`` if
        given, else a quarter of that maximum). Unpriced models give ``None`` for
        both."""
        request = self.build_request(model, messages, **kwargs)
        candidate = self.candidates_for(request.model)[0]
        ctx = self.new_context("chat", request)
        count = ctx.token_count(candidate)
        most = ctx.max_output_tokens(candidate)
        typical_out = output_tokens if output_tokens is not None else max(1, most // 4)
        typical = self.cost(candidate, Usage(input_tokens=count.tokens, output_tokens=typical_out))
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

    def _closing(self) -> list[tuple[str, Callable[[], Any]]]:
        """What closing runs, in order: providers, plugin objects, then closers."""
        owned: list[tuple[str, Callable[[], Any]]] = [
            (p.name, p.aclose) for p in self._providers.values()
        ]
        for thing in (self.cache, *self.gates, self.strategy):
            close = getattr(thing, "aclose", None)
            if callable(close):
                owned.append((type(thing).__name__, close))
        owned.extend(
            (getattr(c, "__qualname__", "closer"), c) for c in reversed(self.lifecycle.closers)
        )
        return owned

    async def aclose(self) -> None:
        """Close every provider's HTTP client (a provider opens a new one if used
        again), then the plugins' objects (``aclose()`` of the cache, gates and
        strategy) and closers (:meth:`add_closer`), each failure logged."""
        for name, close in self._closing():
            try:
                result = close()
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                _close_failed(name, exc)
        self.lifecycle.closed = True

    def close(self) -> None:
        """Sync :meth:`aclose`; also closes the sync API's event loop."""
        if "_portal" in self.__dict__ and self._portal.started:
            self._portal.stop(final=self.aclose)
            return
        if self._loop is None:
            # nothing ever ran on a loop: nothing is bound to one, so the sync closers
            # run here without asyncio, and an async aclose has nothing to release
            for name, close in self._closing():
                try:
                    result = close()
                except Exception as exc:
                    _close_failed(name, exc)
                    continue
                if inspect.iscoroutine(result):
                    result.close()
            self.lifecycle.closed = True
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


# ---------------------------------------------------------------------- stream handles


class AsyncChatStream:
    """An async iterator of stream events; ``response`` is set when it ends."""

    def __init__(self, kernel: Kernel, request: ChatRequest, timeout: float | None = None) -> None:
        self.request = request
        self.response: Response | None = None
        self.first_event_latency: float | None = None
        self.context = kernel.new_context("stream", request, timeout)
        self._kernel = kernel
        self._events = pipeline.run_stream(kernel, self.context, self)

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def __anext__(self) -> StreamEvent:
        self._kernel._bind_loop()
        return await anext(self._events)

    async def aclose(self) -> None:
        await self._events.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def collect(self) -> Response:
        """Drain the stream and return the final response."""
        async for _ in self:
            pass
        assert self.response is not None
        return self.response


class ChatStream:
    """The sync face of :class:`AsyncChatStream`."""

    def __init__(self, kernel: Kernel, stream: AsyncChatStream) -> None:
        self._kernel = kernel
        self._stream = stream

    @property
    def response(self) -> Response | None:
        return self._stream.response

    @property
    def request(self) -> ChatRequest:
        return self._stream.request

    @property
    def first_event_latency(self) -> float | None:
        return self._stream.first_event_latency

    def __iter__(self) -> Iterator[StreamEvent]:
        return self

    def __next__(self) -> StreamEvent:
        try:
            return self._kernel._portal.call(anext(self._stream))
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        self._kernel._portal.call(self._stream.aclose())

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def collect(self) -> Response:
        for _ in self:
            pass
        assert self.response is not None
        return self.response


def _close_failed(name: str, exc: Exception) -> None:
    log.warning("llmkernel.close_failed", what=name, error=f"{type(exc).__name__}: {exc}")


def _merge(into: dict[str, Any], part: Mapping[str, Any]) -> None:
    for key, value in part.items():
        mine = into.get(key)
        if isinstance(mine, dict) and isinstance(value, Mapping):
            _merge(mine, value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


replay = pipeline.replay

__all__ = ["AsyncChatStream", "ChatStream", "Kernel"]
