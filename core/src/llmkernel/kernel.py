"""The Kernel: the public API and the request pipeline, written out in one place.

For every chat call, in order:

1. convert what the user passed into a :class:`~llmkernel.types.ChatRequest`;
2. ``on_request`` hooks (each may refuse the request by raising);
3. the cache, if a plugin provides one (``provide_cache``): a hit answers at once;
4. candidates from the model string, alias or group, ordered by ``select_provider``;
   candidates marked unhealthy (bad credentials) are moved to the back;
5. per candidate, attempts with stamina: exponential backoff with jitter,
   ``Retry-After`` honoured, every attempt inside one total deadline; ``on_error``
   after each failure;
6. fallback to the next candidate by error kind (``ProviderError.fallback``): rate
   limit, overload, server error, timeout, network go on; authentication goes on and
   marks the candidate unhealthy; an invalid request is raised at once;
7. pricing (config ``[prices]``, then ``price_model``), then ``on_response`` hooks and
   the cache store.

A stream runs the same steps, but only until its first event: once an event has
reached the user, a failure ends the stream with an error event and a raised error,
never a silent truncation.

The sync methods run the async ones on a private event loop thread (see
``_portal.py``): one implementation, two faces.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any, TypeVar

import attrs

from llmkernel import convert
from llmkernel._logging import log
from llmkernel._portal import Portal
from llmkernel.cache import Cache
from llmkernel.config import OFFLINE_DEFAULT_MODEL, Config, RetryConfig
from llmkernel.errors import (
    AllCandidatesFailedError,
    AuthenticationError,
    NoProviderError,
    PluginError,
    ProviderError,
)
from llmkernel.errors import TimeoutError as ProviderTimeoutError
from llmkernel.plugins import (
    PluginStatus,
    call_each,
    call_each_strict,
    first_result,
    load_plugins,
    new_manager,
)
from llmkernel.provider import Provider, ProviderConfig
from llmkernel.routing import Candidate
from llmkernel.streaming import ResponseBuilder
from llmkernel.types import (
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    ErrorEvent,
    FinishEvent,
    Message,
    MetadataEvent,
    ModelPrice,
    Reasoning,
    ReasoningDelta,
    ReasoningPart,
    Response,
    ResponseFormat,
    StreamEvent,
    TextDelta,
    TokenCount,
    Tool,
    ToolCallDelta,
    ToolChoice,
    Usage,
    UsageEvent,
    replace,
)

T = TypeVar("T")
_announced_default = False


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
        self._providers: dict[str, Provider] = {}
        self.provider_plugins: dict[str, str] = {}  # provider instance -> plugin name
        self._resolved: dict[str, list[Candidate]] = {}  # model string -> candidates
        self._unhealthy: dict[str, float] = {}
        self._prices: dict[tuple[str, str, str], ModelPrice | None] = {}
        self._portal = Portal()
        call_each_strict(self.plugin_manager, "configure", kernel=self, config=self.config)
        self.cache: Cache | None = self.hook.provide_cache(kernel=self)
        for name in self.config.providers:
            self.provider(name)  # validate every configured provider now

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
            config = ProviderConfig(
                name=name, type=section.type, options=section.options, where=section.where
            )
        else:
            config = ProviderConfig(
                name=name, type=name, options={}, where=f"[providers.{name}] (defaults)"
            )
        transport = self.hook.provide_transport(kernel=self, provider=name)
        if transport is not None:
            config = attrs.evolve(config, transport=transport)
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
        known = sorted(set(self.config.providers) | set(self._providers))
        what = f"provider {name!r}" if implicit else f"provider type {ptype!r} (for {name!r})"
        hint = f"; configured providers: {', '.join(known)}" if known else ""
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
        order, before ``select_provider``."""
        targets = self.config.models.get(model)
        if targets is None:
            if "/" not in model:
                aliases = ", ".join(sorted(self.config.models)) or "none configured"
                raise NoProviderError(
                    f'model {model!r} is neither "provider/model" nor an alias (aliases: {aliases})'
                )
            targets = (model,)
        candidates = []
        for target in targets:
            provider_name, _, model_id = target.partition("/")
            if not provider_name or not model_id:
                raise NoProviderError(f'model {target!r} is not "provider/model"')
            provider = self.provider(provider_name)
            candidates.append(
                Candidate(provider=provider_name, model=model_id, provider_type=provider.type)
            )
        return candidates

    def _candidates(self, request: ChatRequest | EmbeddingRequest) -> list[Candidate]:
        candidates = self._resolved.get(request.model)
        if candidates is None:
            candidates = self._resolved[request.model] = self.resolve(request.model)
        # the built-in select_provider keeps config order: only ask when a plugin might differ
        if isinstance(request, ChatRequest) and len(self.hook.select_provider.get_hookimpls()) > 1:
            chosen = self.hook.select_provider(
                kernel=self, request=request, candidates=list(candidates)
            )
            candidates = list(chosen) if chosen is not None else candidates
        if not candidates:
            raise NoProviderError(f"no candidate left for model {request.model!r}")
        if not self._unhealthy:
            return list(candidates)
        now = time.monotonic()
        healthy = [c for c in candidates if self._unhealthy.get(c.provider, 0.0) <= now]
        return healthy + [c for c in candidates if c not in healthy]

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
        **options: Any,
    ) -> ChatRequest:
        """Convert user input into a :class:`ChatRequest`, naming any bad field."""
        return ChatRequest(
            model=model or self.default_model,
            messages=convert.messages(messages),
            tools=convert.tools(tools),
            tool_choice=convert.tool_choice(tool_choice),
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=convert.stop(stop if stop is None or isinstance(stop, str) else list(stop)),
            response_format=convert.response_format(response_format),
            reasoning=convert.reasoning(reasoning),
            user=user,
            options=options,
            metadata=dict(metadata) if metadata else {},
        )

    # ------------------------------------------------------------------ chat

    async def achat(
        self,
        model: str | None = None,
        messages: Iterable[Message | Mapping[str, Any]] | str = (),
        **kwargs: Any,
    ) -> Response:
        """Send a chat request; see :meth:`build_request` for the arguments."""
        return await self.run_chat(self.build_request(model, messages, **kwargs))

    def chat(
        self,
        model: str | None = None,
        messages: Iterable[Message | Mapping[str, Any]] | str = (),
        **kwargs: Any,
    ) -> Response:
        """Sync :meth:`achat`."""
        return self._portal.call(self.achat(model, messages, **kwargs))

    async def run_chat(self, request: ChatRequest) -> Response:
        """The pipeline for one (non-streaming) chat request."""
        started = time.perf_counter()
        if self.hook.on_request.get_hookimpls():
            self.hook.on_request(kernel=self, request=request)
        if self.cache is not None:
            hit = await self.cache.lookup(request)
            if hit is not None:
                response = attrs.evolve(
                    hit, cached=True, attempts=0, latency=time.perf_counter() - started
                )
                call_each(
                    self.plugin_manager,
                    "on_response",
                    kernel=self,
                    request=request,
                    response=response,
                )
                return response

        async def call(provider: Provider, routed: ChatRequest) -> Response:
            return await provider.chat(routed)

        candidate, response, tally = await self._run_candidates(request, call)
        response = self._finish(request, candidate, response, tally.attempts, started)
        await self._store(request, response)
        call_each(
            self.plugin_manager, "on_response", kernel=self, request=request, response=response
        )
        return response

    async def _store(self, request: ChatRequest, response: Response) -> None:
        """Tell the cache; a failing cache is logged, never costs the user the answer."""
        if self.cache is None:
            return
        try:
            await self.cache.store(request, response)
        except Exception as exc:
            log.warning("llmkernel.cache.store_failed", error=f"{type(exc).__name__}: {exc}")

    def _finish(
        self,
        request: ChatRequest,
        candidate: Candidate,
        response: Response,
        attempts: int,
        started: float,
    ) -> Response:
        parsed = response.parsed
        if (
            parsed is None
            and request.response_format is not None
            and request.response_format.type != "text"
            and response.text
        ):
            import json

            try:
                parsed = json.loads(response.text)
            except ValueError:
                parsed = None
        return replace(
            response,
            provider=candidate.provider,
            model=response.model or candidate.model,
            parsed=parsed,
            cost=self.cost(candidate, response.usage),
            latency=time.perf_counter() - started,
            attempts=attempts,
        )

    async def _run_candidates(
        self,
        request: ChatRequest | EmbeddingRequest,
        call: Callable[[Provider, Any], Awaitable[T]],
    ) -> tuple[Candidate, T, _Tally]:
        """Try each candidate in turn, each with retries, inside one deadline.
        Returns the candidate that answered, its answer, and the attempts made."""
        deadline = time.monotonic() + self.config.retry.timeout
        tally = _Tally()
        failures: list[ProviderError] = []
        for candidate in self._candidates(request):
            if time.monotonic() >= deadline:
                failures.append(
                    ProviderTimeoutError(
                        "the call's total deadline ([retry] timeout) ran out before this candidate",
                        provider=candidate.provider,
                        model=candidate.model,
                    )
                )
                continue
            attempt = functools.partial(
                self._attempt,
                candidate,
                replace(request, model=candidate.model),
                call,
                deadline,
                tally,
            )
            try:
                try:
                    # The first attempt runs bare: a success never pays for retry machinery.
                    return candidate, await attempt(), tally
                except ProviderError as first:
                    if self.config.retry.attempts == 1 or _retry_wait(first, deadline) is False:
                        raise
                    return candidate, await self._retry(first, attempt, deadline), tally
            except ProviderError as exc:
                failures.append(exc)
                if isinstance(exc, AuthenticationError):
                    self.mark_unhealthy(candidate.provider)
                if not exc.fallback:
                    raise
                log.info(
                    "llmkernel.fallback",
                    provider=candidate.provider,
                    model=candidate.model,
                    error=type(exc).__name__,
                )
        if len(failures) == 1:
            raise failures[0]
        raise AllCandidatesFailedError(request.model, failures)

    async def _attempt(
        self,
        candidate: Candidate,
        routed: Any,
        call: Callable[[Provider, Any], Awaitable[T]],
        deadline: float,
        tally: _Tally,
    ) -> T:
        """One attempt on one candidate, inside the deadline; failures are told to
        ``on_error`` and always name the candidate."""
        tally.attempts += 1
        tally.on_candidate[candidate] = number = tally.on_candidate.get(candidate, 0) + 1
        log.debug(
            "llmkernel.request.sent",
            provider=candidate.provider,
            model=candidate.model,
            attempt=number,
        )
        provider = self.provider(candidate.provider)
        try:
            limit = provider.call_timeout
            if limit is not None and time.monotonic() + limit <= deadline + _TIMER_SLACK:
                return await call(provider, routed)  # the provider's own timeout bounds it
            return await _within(deadline, call(provider, routed), candidate)
        except ProviderError as exc:
            _fill(exc, candidate)
            self._notify_error(routed, candidate, exc, number)
            raise

    async def _retry(
        self, first: ProviderError, attempt: Callable[[], Awaitable[T]], deadline: float
    ) -> T:
        """Retry after a first failure, with stamina, bounded by ``[retry] attempts``
        and the deadline. The first failure is replayed into stamina so it counts as
        tried and schedules the first wait. Each wait is the error's Retry-After, else
        exponential backoff with jitter; a wait that would overrun the deadline is
        not taken: the error goes on to fallback instead."""
        retry = self.config.retry
        retries = 0

        def wait_for(exc: Exception) -> bool | float:
            nonlocal retries
            decision = _retry_wait(exc, deadline)
            if decision is False:
                return False
            retries += 1
            wait = decision if decision is not True else _backoff(retry, retries)
            return False if time.monotonic() + wait >= deadline else wait

        pending: ProviderError | None = first
        async for trial in _stamina().retry_context(
            on=wait_for,
            attempts=retry.attempts,
            timeout=max(0.001, deadline - time.monotonic()),
            wait_initial=retry.initial_wait,
            wait_max=retry.max_wait,
            wait_jitter=retry.jitter,
        ):
            with trial:
                if pending is not None:
                    replay, pending = pending, None
                    raise replay
                return await attempt()
        raise AssertionError("unreachable: stamina re-raises the last failure")

    def _notify_error(
        self, request: Any, candidate: Candidate, error: Exception, attempt: int
    ) -> None:
        log.debug(
            "llmkernel.attempt.failed",
            provider=candidate.provider,
            model=candidate.model,
            attempt=attempt,
            error=type(error).__name__,
            retryable=getattr(error, "retryable", False),
        )
        call_each(
            self.plugin_manager,
            "on_error",
            kernel=self,
            request=request,
            candidate=candidate,
            error=error,
            attempt=attempt,
        )

    # ------------------------------------------------------------------ streams

    def astream(
        self,
        model: str | None = None,
        messages: Iterable[Message | Mapping[str, Any]] | str = (),
        **kwargs: Any,
    ) -> AsyncChatStream:
        """Stream a chat: iterate the returned object with ``async for``; its
        ``response`` holds the final response once the stream ends."""
        return AsyncChatStream(self, self.build_request(model, messages, **kwargs))

    def stream(
        self,
        model: str | None = None,
        messages: Iterable[Message | Mapping[str, Any]] | str = (),
        **kwargs: Any,
    ) -> ChatStream:
        """Sync :meth:`astream`: iterate with ``for``."""
        return ChatStream(self, self.astream(model, messages, **kwargs))

    async def run_stream(
        self, request: ChatRequest, handle: AsyncChatStream
    ) -> AsyncIterator[StreamEvent]:
        """The pipeline for one streamed chat; yields the user's events."""
        started = time.perf_counter()
        if self.hook.on_request.get_hookimpls():
            self.hook.on_request(kernel=self, request=request)
        if self.cache is not None:
            hit = await self.cache.lookup(request)
            if hit is not None:
                handle.response = attrs.evolve(
                    hit, cached=True, attempts=0, latency=time.perf_counter() - started
                )
                handle.first_event_latency = handle.response.latency
                for replayed in replay(handle.response):
                    yield replayed
                call_each(
                    self.plugin_manager,
                    "on_response",
                    kernel=self,
                    request=request,
                    response=handle.response,
                )
                return

        async def open_stream(
            provider: Provider, routed: ChatRequest
        ) -> tuple[AsyncIterator[StreamEvent], list[StreamEvent]]:
            """Open a stream and read up to its first event a user would see; events
            the kernel keeps to itself (metadata, usage) are held with it. Until then
            a failure may still retry or fall back."""
            events = aiter(provider.stream(routed))
            held: list[StreamEvent] = []
            try:
                async for event in events:
                    held.append(event)
                    if not isinstance(event, _KEPT):
                        break
            except BaseException:
                await _aclose(events)
                raise
            return events, held

        candidate, (events, held), tally = await self._run_candidates(request, open_stream)
        builder = ResponseBuilder(provider=candidate.provider, model=candidate.model)
        handle.first_event_latency = time.perf_counter() - started
        try:
            for event in held:
                builder.add(event)
                if not isinstance(event, _KEPT):
                    yield event
            async for event in events:
                builder.add(event)
                if not isinstance(event, _KEPT):
                    yield event
            response = builder.build()
        except ProviderError as exc:
            _fill(exc, candidate)
            attempt = tally.on_candidate.get(candidate, 1)
            self._notify_error(
                attrs.evolve(request, model=candidate.model), candidate, exc, attempt
            )
            yield ErrorEvent(error=exc)
            raise
        finally:
            await _aclose(events)
        response = self._finish(request, candidate, response, tally.attempts, started)
        handle.response = response
        await self._store(request, response)
        call_each(
            self.plugin_manager, "on_response", kernel=self, request=request, response=response
        )
        yield UsageEvent(usage=response.usage, cost=response.cost)
        yield FinishEvent(finish_reason=response.finish_reason)

    # ------------------------------------------------------------------ embeddings

    async def aembed(
        self,
        model: str | None = None,
        input: str | Iterable[str] = (),
        *,
        dimensions: int | None = None,
        metadata: Mapping[str, str] | None = None,
        **options: Any,
    ) -> EmbeddingResponse:
        """Embed one text or many; one vector per input, in order."""
        inputs = (input,) if isinstance(input, str) else tuple(input)
        if not inputs:
            raise convert.invalid("input", "at least one text to embed is needed")
        if not model:
            raise convert.invalid("model", "an embedding model is required (provider/model)")
        request = EmbeddingRequest(
            model=model,
            inputs=inputs,
            dimensions=dimensions,
            options=options,
            metadata=dict(metadata) if metadata else {},
        )
        started = time.perf_counter()

        async def call(provider: Provider, routed: EmbeddingRequest) -> EmbeddingResponse:
            return await provider.embed(routed)

        candidate, response, tally = await self._run_candidates(request, call)
        return attrs.evolve(
            response,
            provider=candidate.provider,
            model=response.model or candidate.model,
            cost=self.cost(candidate, response.usage),
            latency=time.perf_counter() - started,
            attempts=tally.attempts,
        )

    def embed(
        self,
        model: str | None = None,
        input: str | Iterable[str] = (),
        **kwargs: Any,
    ) -> EmbeddingResponse:
        """Sync :meth:`aembed`."""
        return self._portal.call(self.aembed(model, input, **kwargs))

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
        candidate = self.resolve(request.model)[0]
        routed = attrs.evolve(request, model=candidate.model)
        result: TokenCount = self.hook.count_tokens(
            kernel=self,
            request=routed,
            provider_type=candidate.provider_type,
            model=candidate.model,
        )
        return result

    def price(self, candidate: Candidate) -> ModelPrice | None:
        """The price of a candidate's model: config ``[prices]`` by instance name, then
        by provider type, then ``price_model`` plugins. ``None`` when unpriced; a
        failing plugin is logged and leaves the model unpriced."""
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
    ) -> Decimal | None:
        """The cost of sending ``messages`` to ``model``'s first candidate and getting
        ``output_tokens`` back (default: ``max_tokens``, else none). ``None`` when
        the model is unpriced."""
        tokens = self.count_tokens(model, messages, **kwargs).tokens
        candidate = self.resolve(model or self.default_model)[0]
        out = output_tokens if output_tokens is not None else kwargs.get("max_tokens") or 0
        return self.cost(candidate, Usage(input_tokens=tokens, output_tokens=out))

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        """Close every provider's HTTP client (a provider opens a new one if used again)."""
        for provider in list(self._providers.values()):
            try:
                await provider.aclose()
            except Exception as exc:
                log.warning(
                    "llmkernel.provider.close_failed",
                    provider=provider.name,
                    error=f"{type(exc).__name__}: {exc}",
                )

    def close(self) -> None:
        """Sync :meth:`aclose`; also stops the sync event loop thread."""
        if self._portal.started:
            self._portal.call(self.aclose())
            self._portal.stop()
            return
        if not self._providers:
            return
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

    def __init__(self, kernel: Kernel, request: ChatRequest) -> None:
        self.request = request
        self.response: Response | None = None
        self.first_event_latency: float | None = None
        self._events = kernel.run_stream(request, self)

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def __anext__(self) -> StreamEvent:
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


# ---------------------------------------------------------------------- helpers

# A provider whose own timeout ends a call within this many seconds of the deadline
# needs no second timer from the kernel.
_TIMER_SLACK = 1.0

# Events the kernel folds into the response and emits itself at the end.
_KEPT = (UsageEvent, FinishEvent, MetadataEvent)


@attrs.define
class _Tally:
    """Attempts made for one call, in all and per candidate."""

    attempts: int = 0
    on_candidate: dict[Candidate, int] = attrs.field(factory=dict)


def replay(response: Response) -> Iterator[StreamEvent]:
    """A stored response as stream events: how cached answers stream. Thinking and
    signatures are replayed too, so a rebuilt answer can be sent back."""
    thinking = (p for p in response.message.content if isinstance(p, ReasoningPart))
    for index, part in enumerate(thinking):
        yield ReasoningDelta(
            text=part.text, signature=part.signature, redacted=part.redacted, index=index
        )
    if response.text:
        yield TextDelta(text=response.text)
    for index, call in enumerate(response.tool_calls):
        yield ToolCallDelta(
            index=index,
            id=call.id,
            name=call.name,
            arguments=call.arguments_json,
            signature=call.signature,
        )
    yield UsageEvent(usage=response.usage, cost=response.cost)
    yield FinishEvent(finish_reason=response.finish_reason)


def _retry_wait(exc: Exception, deadline: float) -> bool | float:
    """Whether to retry ``exc``: ``False``, ``True`` (back off), or the wait its
    ``Retry-After`` asks for. Never past the deadline."""
    if not isinstance(exc, ProviderError) or not exc.retryable:
        return False
    now = time.monotonic()
    if now >= deadline:
        return False
    if exc.retry_after is None:
        return True
    return False if now + exc.retry_after >= deadline else exc.retry_after


def _backoff(retry: RetryConfig, number: int) -> float:
    """Exponential backoff for retry ``number`` (from 1), capped, with jitter."""
    base = min(retry.max_wait, retry.initial_wait * 2.0 ** (number - 1))
    return base + random.uniform(0, retry.jitter)


def _log_retry(details: Any) -> None:
    error = details.caused_by
    log.info(
        "llmkernel.retry.scheduled",
        attempt=details.retry_num,
        wait=round(details.wait_for, 3),
        error=type(error).__name__,
        provider=getattr(error, "provider", None),
        model=getattr(error, "model", None),
    )


_stamina_module: Any = None


def _stamina() -> Any:
    """stamina, imported on the first call rather than at startup, with its retry
    logging made quiet (see :func:`_quiet_stamina`)."""
    global _stamina_module
    if _stamina_module is None:
        import stamina

        _quiet_stamina()
        _stamina_module = stamina
    return _stamina_module


def _quiet_stamina() -> None:
    """Keep retries quiet unless the application asked for logs.

    stamina's default retry hook logs through structlog, which prints to stdout
    while the application has not configured structlog. When the application has
    set no hooks of its own, use stamina's defaults minus that one, plus
    ``llmkernel.retry.scheduled`` through the kernel's logger (structlog once
    configured, else the quiet standard ``llmkernel`` logger).
    """
    from stamina import instrumentation
    from stamina._config import CONFIG

    if getattr(CONFIG, "_on_retry", False) is not None:
        return  # the application chose its hooks (or stamina changed its internals)
    from stamina.instrumentation._hooks import get_default_hooks

    hooks = [h for h in get_default_hooks() if h is not instrumentation.StructlogOnRetryHook]
    instrumentation.set_on_retry_hooks([*hooks, _log_retry])


async def _within(deadline: float, awaitable: Awaitable[T], candidate: Candidate) -> T:
    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            return await awaitable
    except TimeoutError:
        raise ProviderTimeoutError(
            "the call's total deadline ([retry] timeout) ran out",
            provider=candidate.provider,
            model=candidate.model,
        ) from None


def _fill(exc: ProviderError, candidate: Candidate) -> None:
    """Errors always name the provider instance and model they came from."""
    exc.provider = exc.provider or candidate.provider
    exc.model = exc.model or candidate.model


async def _aclose(events: AsyncIterator[Any]) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):  # closing must not hide the real error
            await close()


__all__ = ["AsyncChatStream", "ChatStream", "Kernel"]
