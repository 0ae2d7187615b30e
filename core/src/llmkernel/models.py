"""What a kernel knows about models: its provider instances, how a model string
resolves into candidates, each candidate's capabilities, price and token count.

``kernel.models`` (a :class:`Models`) is what plugins ask: a filter reads
``capabilities(candidate)``, a budget ``price(candidate)``, a strategy the
candidates. Everything here is remembered per kernel (bounded where a client can
grow it) and does no network I/O.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from llmkernel import convert
from llmkernel._logging import log
from llmkernel.config import OFFLINE_DEFAULT_MODEL
from llmkernel.errors import NoProviderError, PluginError
from llmkernel.provider import Provider, ProviderConfig
from llmkernel.routing import Candidate
from llmkernel.types import Capabilities, ChatRequest, EmbeddingRequest, TokenCount, Usage, replace

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel, Setup

__all__ = ["Models", "Names", "live_names"]

#: Model strings remembered with their candidates (a gateway sees arbitrary ones).
_RESOLVED_MAX = 1024
_announced_default = False


class Models:
    """The providers and models of one kernel (``kernel.models``)."""

    def __init__(self, kernel: Kernel, setup: Setup) -> None:
        self._kernel = kernel
        self._setup = setup
        self.config = setup.config
        self._providers: dict[str, Provider] = {}
        #: provider instance name -> the plugin that made it
        self.provider_plugins: dict[str, str] = {}
        self._resolved: dict[str, list[Candidate]] = {}
        self._unhealthy: dict[str, float] = {}
        self._prices: dict[tuple[str, str, str], Any] = {}
        self._capabilities: dict[Candidate, Capabilities | None] = {}
        #: request options plugins read themselves (``cache=False``): kept on
        #: ``ctx.request``, stripped from what providers receive
        self.claimed_options: frozenset[str] = frozenset()
        #: the names the config defines: what state and labels may be keyed by
        self.names = Names(self)

    # ------------------------------------------------------------------ providers

    def provider(self, name: str) -> Provider:
        """The provider instance ``name``, created on first use: a name with a
        ``[providers.<name>]`` table uses it; any other is tried as a provider type
        with default settings (``openai/gpt-4o`` works with no config)."""
        existing = self._providers.get(name)
        if existing is not None:
            return existing
        kernel, hooks = self._kernel, self._setup.hooks
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
            transport=hooks.call("provide_transport", "first", kernel=kernel, provider=name)[0],
            lifecycle=self._setup.lifecycle,
        )
        provider, plugin = hooks.call("provide_chat", "first", kernel=kernel, config=config)
        if provider is not None and not isinstance(provider, Provider):
            raise PluginError(
                f"plugin {plugin!r} returned {type(provider).__name__} from provide_chat; "
                "it must return a llmkernel.provider.Provider"
            )
        if plugin is not None:
            self.provider_plugins[name] = plugin
        if provider is None:
            raise NoProviderError(self._no_provider_message(name, ptype, section is None))
        self._providers[name] = provider
        return provider

    def _no_provider_message(self, name: str, ptype: str, implicit: bool) -> str:
        from llmkernel.plugins import unavailable_reason

        known = sorted(set(self.config.providers) | set(self._providers))
        what = f"provider {name!r}" if implicit else f"provider type {ptype!r} (for {name!r})"
        hint = f"; configured providers: {', '.join(known)}" if known else ""
        reason = unavailable_reason(ptype, self._setup.plugins, self.config)
        if reason is not None:
            return f"no installed plugin serves {what}: {reason}{hint}"
        fix = (
            f"add a [providers.{name}] table with a known type"
            if implicit
            else f"set a known type in [providers.{name}]"
        )
        return f"no installed plugin serves {what}: install llmkernel-{ptype} or {fix}{hint}"

    def created(self) -> dict[str, Provider]:
        """The provider instances made so far."""
        return dict(self._providers)

    def forget_providers(self) -> None:
        """Drop every instance (a forked child must not use the parent's clients)."""
        self._providers.clear()

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

    # ------------------------------------------------------------------ resolution

    def resolve(self, model: str) -> list[Candidate]:
        """The candidates for ``model`` (``provider/model``, alias or group), in config
        order, before filters and the strategy; remembered for a bounded number of
        model strings."""
        candidates = self._resolved.get(model)
        if candidates is None:
            candidates = self._resolve(model)
            if len(self._resolved) >= _RESOLVED_MAX:
                self._resolved.pop(next(iter(self._resolved)))
            self._resolved[model] = candidates
        return candidates

    def _resolve(self, model: str) -> list[Candidate]:
        if not isinstance(model, str) or not model:
            raise convert.invalid(
                "model", f'must be a non-empty "provider/model" string or alias, not {model!r}'
            )
        experiment = self.config.experiments.get(model)
        if experiment is not None:  # every variant's candidates (for listings and stats)
            seen: list[Candidate] = []
            for target in experiment.variants.values():
                seen += [c for c in self.resolve(target) if c not in seen]
            return seen
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

    def routed(self, request: Any, model: str) -> Any:
        """``request`` as a provider receives it: its model id, claimed options gone."""
        claimed = self.claimed_options
        if claimed and request.options and not claimed.isdisjoint(request.options):
            options = {k: v for k, v in request.options.items() if k not in claimed}
            return replace(request, model=model, options=options)
        return replace(request, model=model)

    def claim_options(self, *names: str) -> None:
        """Request options a plugin reads itself (``cache=False``, ``cache_ttl=60``):
        kept on ``ctx.request`` for plugins, stripped from the request providers get."""
        self.claimed_options = self.claimed_options | frozenset(names)

    # ------------------------------------------------------------------ health

    def healthy_first(self, candidates: list[Candidate]) -> list[Candidate]:
        """Candidates marked unhealthy (bad credentials) moved to the back."""
        if not self._unhealthy:
            return candidates
        now = time.monotonic()
        healthy = [c for c in candidates if self._unhealthy.get(c.provider, 0.0) <= now]
        return healthy + [c for c in candidates if c not in healthy]

    def mark_unhealthy(self, provider: str, seconds: float | None = None) -> None:
        """Move ``provider`` to the back of every candidate list for a while."""
        self._unhealthy[provider] = time.monotonic() + (
            self.config.retry.unhealthy_cooldown if seconds is None else seconds
        )

    # ------------------------------------------------------------------ what a model is

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
        if len(self._capabilities) < _RESOLVED_MAX * 4:
            self._capabilities[candidate] = caps
        return caps

    def count(self, request: ChatRequest | EmbeddingRequest, candidate: Candidate) -> TokenCount:
        """``count_tokens`` hooks for ``request`` on ``candidate`` (the model to count
        for is the candidate's; ``request.model`` stays as asked)."""
        kernel = self._kernel
        result, plugin = self._setup.hooks.call(
            "count_tokens",
            "first",
            kernel=kernel,
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
            kernel = self._kernel
            try:
                price, _ = self._setup.hooks.call(
                    "price_model",
                    "first",
                    kernel=kernel,
                    provider_type=candidate.provider_type,
                    model=candidate.model,
                    candidate=candidate,
                )
            except PluginError as exc:  # unpriced this time; asked again next call
                log.warning("llmkernel.plugin.hook_failed", hook="price_model", error=str(exc))
                return None
        if len(self._prices) < _RESOLVED_MAX * 4:
            self._prices[key] = price
        return price

    def cost(self, candidate: Candidate, usage: Usage) -> Decimal | None:
        """What ``usage`` costs on ``candidate``, or ``None`` when unpriced."""
        price = self.price(candidate)
        return price.cost(usage) if price is not None else None


class Names:
    """The model and deployment names a kernel's configuration defines
    (``kernel.models.names``): what a plugin may key state by, or use as a metric
    label, when a name comes from a client. A client chooses the model string of
    every call, so anything kept per model (statistics, breakers, metric series,
    health entries) must be bounded by what the operator configured, never by what
    was asked; everything else goes under a catch-all (``other``).

    Known are the aliases, groups and experiments of ``[models]``, their targets, and
    every ``provider/model`` a provider instance declares without a network call
    (``Provider.declared_models()``), read again when a provider instance appears."""

    def __init__(self, models: Models) -> None:
        self._models = models
        config = models.config
        self.aliases = frozenset(config.models) | frozenset(config.experiments)
        self.providers: frozenset[str] = frozenset()
        self.deployments: frozenset[str] = frozenset()
        self._seen = -1  # how many provider instances the sets were read for

    def _read(self) -> None:
        models = self._models
        if len(models._providers) == self._seen:
            return
        config = models.config
        deployments = {t.target for ts in config.model_targets.values() for t in ts}
        for experiment in config.experiments.values():
            deployments.update(v for v in experiment.variants.values() if "/" in v)
        for name, provider in list(models._providers.items()):
            try:
                deployments.update(f"{name}/{m}" for m in provider.declared_models())
            except Exception:  # a provider that cannot say declares nothing
                continue
        self.providers = frozenset(models._providers) | frozenset(config.providers)
        self.deployments = frozenset(deployments)
        self._seen = len(models._providers)

    def provider(self, name: str) -> str | None:
        """``name`` if it is a provider instance of this kernel."""
        self._read()
        return name if name in self.providers else None

    def deployment(self, provider: str, model: str) -> str | None:
        """``provider/model`` when the config or the provider defines it, else ``None``."""
        self._read()
        qualified = f"{provider}/{model}"
        return qualified if qualified in self.deployments else None

    def model(self, name: str) -> str | None:
        """A model string as a caller sent it, when it is an alias, group or
        experiment, or a known ``provider/model``; else ``None``."""
        if name in self.aliases:
            return name
        provider, _, model = name.partition("/")
        return self.deployment(provider, model) if provider and model else None


class _LiveNames:
    def __init__(self, kernel: Kernel) -> None:
        import weakref

        self._kernel = weakref.ref(kernel)

    def __getattr__(self, name: str) -> Any:
        kernel = self._kernel()
        if kernel is None:
            raise ReferenceError("the kernel is gone")
        return getattr(kernel.models.names, name)


def live_names(kernel: Kernel) -> Names:
    """``kernel.models.names`` of whatever config the kernel has now
    (``kernel.reconfigure`` makes new ones), for a plugin that keeps it; the kernel is
    not kept alive by it."""
    from typing import cast

    return cast(Names, _LiveNames(kernel))
