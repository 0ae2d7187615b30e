"""The kernel's hooks: each a signature and a docstring, nothing else.

Hooks are sync and cheap; work that does I/O lives in async methods of the objects
the hooks return. An implementation may accept any subset of a hook's arguments, so
hooks can grow new arguments without breaking plugins. Every hook but
``register_commands`` receives the ``kernel``, so plugins need no globals.

Plugins implement hooks with ``from llmkernel import hookimpl``. The reference pages
under ``docs/hooks/`` expand on these docstrings, one page per hook.

Per-request hooks receive ``ctx``, the call's
:class:`~llmkernel.context.RequestContext`. The kernel calls most hooks one
implementation at a time (to isolate and name failures), so ``async def``
implementations and ``wrapper=True`` implementations are refused at load.
A plugin may add hookspecs of its own: a module attribute ``llmkernel_hookspecs``
naming a module or class of ``@hookspec`` functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

    import httpx

    from llmkernel.cache import Cache
    from llmkernel.cli_registry import CommandRegistry
    from llmkernel.config import Config
    from llmkernel.context import Attempt, Decision, Drop, Gate, Outcome, RequestContext
    from llmkernel.kernel import Kernel
    from llmkernel.provider import Provider, ProviderConfig
    from llmkernel.routing import Candidate
    from llmkernel.strategies import StrategyRegistry
    from llmkernel.types import ChatRequest, EmbeddingRequest, ModelPrice, Response, TokenCount

PROJECT = "llmkernel"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ----------------------------------------------------------------------------------
# Setup: once per kernel, after plugins are loaded
# ----------------------------------------------------------------------------------


@hookspec
def configure(kernel: Kernel, config: Config) -> None:
    """Read the plugin's settings when a kernel is built.

    Called once per kernel, after every plugin is loaded and before any request.
    A plugin's own table is ``config.plugin_settings("<plugin-name>")`` (the
    ``[plugin.<plugin-name>]`` table); validate it with
    :func:`llmkernel.options.parse_options` and raise
    :class:`~llmkernel.errors.ConfigError` on bad input.

    :param kernel: the kernel being built.
    :param config: the whole, validated configuration.
    :return: ignored.
    """


@hookspec
def register_commands(registry: CommandRegistry) -> None:
    """Add subcommands to the ``llmkernel`` CLI.

    Call ``registry.add(name, help=..., arguments=fn(parser), run=fn(args, kernel))``.
    The CLI owns argument parsing, logging setup and error display.

    :param registry: collects the commands.
    :return: ignored.
    """


@hookspec(firstresult=True)
def provide_transport(kernel: Kernel, provider: str) -> httpx.AsyncBaseTransport | None:
    """Supply the httpx transport for a provider instance's client (firstresult).

    The gateway uses it to put providers on a faster transport; tests use it to
    route traffic. Return ``None`` to leave httpx's default.

    :param kernel: the kernel.
    :param provider: the provider instance name.
    :return: an ``httpx.AsyncBaseTransport`` or ``None``.
    """


# ----------------------------------------------------------------------------------
# Providers and models
# ----------------------------------------------------------------------------------


@hookspec(firstresult=True)
def provide_chat(kernel: Kernel, config: ProviderConfig) -> Provider | None:
    """Create the provider instance for one ``[providers.<name>]`` section (firstresult).

    Return a :class:`~llmkernel.provider.Provider` when ``config.type`` is a type
    this plugin serves, else ``None``. Creating it must not do network I/O; read
    ``config.options`` strictly and raise :class:`~llmkernel.errors.ConfigError`
    naming the key on bad input.

    :param kernel: the kernel.
    :param config: the instance's name, type and options.
    :return: a ``Provider`` or ``None``.
    """


@hookspec(firstresult=True)
def price_model(
    kernel: Kernel, provider_type: str, model: str, candidate: Candidate
) -> ModelPrice | None:
    """Price a model per million tokens (firstresult).

    Return ``None`` when the model is unknown to this plugin: an unknown price stays
    unpriced (``response.cost is None``), never zero. Prices from the config's
    ``[prices]`` table win over every plugin; among plugins, ``tryfirst`` ones,
    then the last registered, answer first (pluggy's order). The answer may be
    any object with a ``cost(usage) -> Decimal`` method (tiered prices, say);
    :class:`~llmkernel.types.ModelPrice` is the common case.

    :param kernel: the kernel.
    :param provider_type: the provider type (``openai``), not the instance name.
    :param model: the provider's model id.
    :param candidate: the candidate (its ``provider`` is the instance name: an
        OpenAI-compatible server is told apart from OpenAI by it).
    :return: a ``ModelPrice`` or ``None``.
    """


@hookspec(firstresult=True)
def count_tokens(
    kernel: Kernel, request: ChatRequest | EmbeddingRequest, provider_type: str, model: str
) -> TokenCount | None:
    """Count the input tokens of ``request`` for a model (firstresult).

    ``request`` is a ``ChatRequest`` (messages and tools) or an
    ``EmbeddingRequest`` (its ``inputs``); its ``model`` is as the caller asked
    (an alias, say): count for ``model``.

    Return a :class:`~llmkernel.types.TokenCount` with ``exact=False`` and a
    ``method`` when estimating. The kernel's own estimate (about four characters a
    token) runs last.

    :param kernel: the kernel.
    :param request: the request.
    :param provider_type: the provider type.
    :param model: the provider's model id.
    :return: a ``TokenCount`` or ``None``.
    """


# ----------------------------------------------------------------------------------
# Routing: filters, then the configured strategy, then fallback rules
# ----------------------------------------------------------------------------------


@hookspec
def register_strategies(kernel: Kernel, registry: StrategyRegistry) -> None:
    """Add routing strategies by name.

    Call ``registry.add(name, factory)`` where ``factory(kernel, settings)`` returns
    an object with ``select(ctx, candidates) -> list[Candidate]`` (see
    :class:`~llmkernel.context.Strategy`). ``settings`` is the config's
    ``[routing.<name>]`` table. Config ``[routing] strategy = "<name>"`` picks one;
    two plugins adding the same name is a ``PluginError`` naming both. Called once
    per kernel, before ``configure``.

    :param kernel: the kernel.
    :param registry: collects the strategies.
    :return: ignored.
    """


@hookspec
def filter_candidates(
    kernel: Kernel, ctx: RequestContext, candidates: list[Candidate]
) -> Iterable[Drop] | None:
    """Leave candidates out of a call before the strategy orders them.

    Every implementation runs, each on the candidates the ones before it left.
    Return the :class:`~llmkernel.context.Drop` of each candidate to leave out, with
    its reason (a missing capability, a context window too small, an open breaker);
    ``None`` or nothing to keep them all. When no candidate is left the call fails
    with an error listing each candidate and why it was dropped.

    :param kernel: the kernel.
    :param ctx: the call.
    :param candidates: the candidates still in, in config order.
    :return: drops, or ``None``.
    """


@hookspec(firstresult=True)
def select_provider(
    kernel: Kernel, ctx: RequestContext, request: ChatRequest, candidates: list[Candidate]
) -> list[Candidate] | None:
    """Order (and filter) the candidates for a request (firstresult).

    The built-in ``priority`` strategy (the default) calls this hook, so a plugin
    that only reorders keeps working; named strategies
    (:func:`register_strategies`) are the way to offer a choice. Return the
    candidates in the order to try; drop the ones not to try. The kernel's
    built-in keeps config order and is ``trylast``.

    :param kernel: the kernel.
    :param ctx: the call.
    :param request: the request as the user made it.
    :param candidates: each ``provider``/``model`` pair that could serve it.
    :return: the candidates to try, in order, or ``None`` to defer.
    """


@hookspec(firstresult=True)
def decide(
    kernel: Kernel,
    ctx: RequestContext,
    attempt: Attempt,
    error: Exception,
    remaining: list[Candidate],
) -> Decision | None:
    """What to do after an attempt failed with a provider error (firstresult).

    Return a :class:`~llmkernel.context.Decision`: ``retry`` the candidate (after
    ``wait`` seconds, or the kernel's backoff), go to the ``next`` candidate, or
    ``raise`` the error. The built-in (``trylast``) applies ``[routing.fallback]``:
    per error kind, attempts per candidate, attempts in all; a context-window
    error goes only to candidates with a larger window.

    :param kernel: the kernel.
    :param ctx: the call.
    :param attempt: the attempt that failed.
    :param error: its error (a ``ProviderError``).
    :param remaining: the candidates not yet tried, in order.
    :return: a ``Decision`` or ``None`` to defer.
    """


# ----------------------------------------------------------------------------------
# The request pipeline
# ----------------------------------------------------------------------------------


@hookspec
def on_request(kernel: Kernel, ctx: RequestContext, request: ChatRequest) -> None:
    """Called for every chat and embedding request before the cache and routing.

    Raise a :class:`~llmkernel.errors.LLMKernelError` to refuse the request. Every
    implementation runs. ``ctx.kind`` says ``chat``, ``stream`` or ``embed``
    (``request`` is then an ``EmbeddingRequest``).

    :param kernel: the kernel.
    :param ctx: the call.
    :param request: the request as the user made it.
    :return: ignored.
    """


@hookspec(firstresult=True)
def provide_cache(kernel: Kernel) -> Cache | None:
    """Supply the response cache (firstresult).

    Called once per kernel. The returned object has async ``lookup(request)`` and
    ``store(request, response)``; the kernel asks it before routing and tells it
    after a fresh answer. ``request.metadata`` says who asks (namespace by
    tenant). An ``aclose()`` method, if any, is awaited by ``Kernel.aclose``.

    :param kernel: the kernel.
    :return: a ``Cache`` or ``None`` for no caching.
    """


@hookspec
def provide_gate(kernel: Kernel) -> Gate | None:
    """Supply a gate: asked before every attempt, told exactly once after it.

    Called once per kernel; every implementation's non-``None`` answer is kept, in
    pluggy's order. A :class:`~llmkernel.context.Gate` has ``async acquire(ctx,
    attempt)``, which may wait within ``ctx.deadline`` or raise
    :class:`~llmkernel.errors.RefusedError` (budget, rate limit, open breaker: the
    candidate is dropped and the next one tried, no retry, no ``on_error``), and
    sync ``release(ctx, attempt, outcome)``, called exactly once for each acquire
    that returned, in reverse order, whatever happens: success, error, timeout,
    cancellation, a stream abandoned or cut. An ``aclose()`` method, if any, is
    awaited by ``Kernel.aclose``.

    :param kernel: the kernel.
    :return: a gate or ``None``.
    """


@hookspec
def on_error(
    kernel: Kernel,
    ctx: RequestContext,
    request: ChatRequest,
    candidate: Candidate,
    error: Exception,
    attempt: int,
) -> None:
    """Called after each failed attempt on a candidate, before any retry or fallback.

    For health tracking, circuit breakers and metrics. Every implementation runs;
    exceptions raised here are logged and ignored. Refusals by gates are not
    errors and do not come here.

    :param kernel: the kernel.
    :param ctx: the call.
    :param request: the request as routed (``request.model`` is the provider's id).
    :param candidate: the candidate that failed.
    :param error: the error (a ``ProviderError`` for provider failures).
    :param attempt: the attempt number on this candidate, from 1.
    :return: ignored.
    """


@hookspec
def on_response(
    kernel: Kernel, ctx: RequestContext, request: ChatRequest, response: Response
) -> None:
    """Called with every successful chat response, cached or fresh, streamed or not.

    ``response`` is final: provider, usage, cost, latency, attempts. Every
    implementation runs; exceptions raised here are logged and ignored, never lose
    the user their answer. For every ending, use :func:`on_request_end`.

    :param kernel: the kernel.
    :param ctx: the call.
    :param request: the request as the user made it.
    :param response: the final response.
    :return: ignored.
    """


@hookspec
def on_attempt_end(kernel: Kernel, ctx: RequestContext, attempt: Attempt, outcome: Outcome) -> None:
    """Called exactly once for every attempt, however it ended.

    ``outcome.status`` is ``ok``, ``error``, ``refused`` (a gate refused it),
    ``cancelled`` or ``abandoned`` (a stream the caller stopped reading). After the
    gates' ``release``. Every implementation runs; failures are logged and
    ignored.

    :param kernel: the kernel.
    :param ctx: the call.
    :param attempt: the attempt.
    :param outcome: how it ended: error, usage, latency, headers.
    :return: ignored.
    """


@hookspec
def on_request_end(kernel: Kernel, ctx: RequestContext, outcome: Outcome) -> Any:
    """Called exactly once for every call, however it ended.

    Chats, streams and embeddings; answered, failed, refused (by ``on_request``,
    the filters or every gate), cancelled, abandoned, or served from the cache
    (``outcome.cached``). For ledgers and metrics. Every implementation runs;
    failures are logged and ignored.

    The hook is sync. It may return an awaitable: the kernel awaits it before the
    caller gets the answer (the response returned, the error raised, a stream's end),
    so an implementation can make the call wait for its I/O without blocking the
    event loop (the ledger returns one that completes when the call's row is
    committed). What it raises after a success is the call's error; after a
    failure the call's own error is raised. Nothing is awaited when the caller is
    gone (cancelled, a stream it stopped reading).

    :param kernel: the kernel.
    :param ctx: the call.
    :param outcome: how the call ended; ``outcome.response`` is the final response.
    :return: ``None``, or an awaitable the kernel awaits before answering.
    """


@hookspec
def collect_stats(kernel: Kernel) -> Mapping[str, Any] | None:
    """Contribute to ``kernel.stats()``.

    Every implementation's mapping is merged, dict into dict. By convention,
    per-deployment figures go under ``{"deployments": {"provider/model": {...}}}``
    and anything else under a section named for the plugin (``"cache"``).
    Return plain data (numbers, strings, lists, dicts).

    :param kernel: the kernel.
    :return: a mapping or ``None``.
    """
