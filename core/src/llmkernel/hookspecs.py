"""The kernel's hooks: each a signature and a docstring, nothing else.

Hooks are sync and cheap; work that does I/O lives in async methods of the objects
the hooks return. An implementation may accept any subset of a hook's arguments, so
hooks can grow new arguments without breaking plugins. Every hook but
``register_commands`` receives the ``kernel``, so plugins need no globals.

Plugins implement hooks with ``from llmkernel import hookimpl``. The reference pages
under ``docs/hooks/`` expand on these docstrings, one page per hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import httpx

    from llmkernel.cache import Cache
    from llmkernel.cli_registry import CommandRegistry
    from llmkernel.config import Config
    from llmkernel.kernel import Kernel
    from llmkernel.provider import Provider, ProviderConfig
    from llmkernel.routing import Candidate
    from llmkernel.types import ChatRequest, ModelPrice, Response, TokenCount

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
def price_model(kernel: Kernel, provider_type: str, model: str) -> ModelPrice | None:
    """Price a model per million tokens (firstresult).

    Return ``None`` when the model is unknown to this plugin: an unknown price stays
    unpriced (``response.cost is None``), never zero. Prices from the config's
    ``[prices]`` table win over every plugin.

    :param kernel: the kernel.
    :param provider_type: the provider type (``openai``), not the instance name.
    :param model: the provider's model id.
    :return: a ``ModelPrice`` or ``None``.
    """


@hookspec(firstresult=True)
def count_tokens(
    kernel: Kernel, request: ChatRequest, provider_type: str, model: str
) -> TokenCount | None:
    """Count the input tokens of ``request`` for a model (firstresult).

    Return a :class:`~llmkernel.types.TokenCount` with ``exact=False`` and a
    ``method`` when estimating. The kernel's own estimate (about four characters a
    token) runs last.

    :param kernel: the kernel.
    :param request: the request (its messages and tools).
    :param provider_type: the provider type.
    :param model: the provider's model id.
    :return: a ``TokenCount`` or ``None``.
    """


# ----------------------------------------------------------------------------------
# Routing
# ----------------------------------------------------------------------------------


@hookspec(firstresult=True)
def select_provider(
    kernel: Kernel, request: ChatRequest, candidates: list[Candidate]
) -> list[Candidate] | None:
    """Order (and filter) the candidates for a request (firstresult).

    ``candidates`` come from the model string, alias or group, in config order.
    Return them in the order to try; drop the ones not to try. The kernel's
    built-in keeps config order and is ``trylast``, so any strategy plugin wins.

    :param kernel: the kernel.
    :param request: the request as the user made it.
    :param candidates: each ``provider``/``model`` pair that could serve it.
    :return: the candidates to try, in order, or ``None`` to defer.
    """


# ----------------------------------------------------------------------------------
# The request pipeline
# ----------------------------------------------------------------------------------


@hookspec
def on_request(kernel: Kernel, request: ChatRequest) -> None:
    """Called for every chat request before the cache and routing.

    Raise a :class:`~llmkernel.errors.LLMKernelError` to refuse the request (a
    budget or rate limit, say). Every implementation runs.

    :param kernel: the kernel.
    :param request: the request as the user made it.
    :return: ignored.
    """


@hookspec(firstresult=True)
def provide_cache(kernel: Kernel) -> Cache | None:
    """Supply the response cache (firstresult).

    Called once per kernel. The returned object has async ``lookup(request)`` and
    ``store(request, response)``; the kernel asks it before routing and tells it
    after a fresh answer.

    :param kernel: the kernel.
    :return: a ``Cache`` or ``None`` for no caching.
    """


@hookspec
def on_error(
    kernel: Kernel, request: ChatRequest, candidate: Candidate, error: Exception, attempt: int
) -> None:
    """Called after each failed attempt on a candidate, before any retry or fallback.

    For health tracking, circuit breakers and metrics. Every implementation runs;
    exceptions raised here are logged and ignored.

    :param kernel: the kernel.
    :param request: the request as routed (``request.model`` is the provider's id).
    :param candidate: the candidate that failed.
    :param error: the error (a ``ProviderError`` for provider failures).
    :param attempt: the attempt number on this candidate, from 1.
    :return: ignored.
    """


@hookspec
def on_response(kernel: Kernel, request: ChatRequest, response: Response) -> None:
    """Called with every successful response, cached or fresh, streamed or not.

    ``response`` is final: provider, usage, cost, latency, attempts. For ledgers,
    metrics and budgets. Every implementation runs; exceptions raised here are
    logged and ignored, never lose the user their answer.

    :param kernel: the kernel.
    :param request: the request as the user made it.
    :param response: the final response.
    :return: ignored.
    """
