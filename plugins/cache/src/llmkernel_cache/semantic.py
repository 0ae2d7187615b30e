"""The semantic layer: on an exact miss, a stored answer to a prompt that means the
same, found by embedding and guarded against look-alikes.

A lookup (only for requests it may serve, see :meth:`SemanticLayer.plan`) embeds
the last user message through the kernel's ``aembed``, searches the request's
partition in memory (:class:`~llmkernel_cache.index.SemanticIndex`), and serves
the best candidate that reaches the threshold, passes every guard
(:mod:`llmkernel_cache.guards`) and, when configured, the verifier. A miss hands a
:class:`Ticket` to the store of the same call, so the fresh answer is kept with
its vector. Only complete answers (finish reason ``stop``) are kept.

A partition is everything but the last user message that changes the answer:
namespace (tenant), model as requested, the canonical form of the rest of the
request (system prompt, earlier turns, temperature, top_p, max tokens, response
format, options), the embedding model, its input prefix and dimension, and the
layer's version. Two requests in different partitions are never compared.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from llmkernel.types import ChatRequest, FilePart, ImagePart, Message, Response, TextPart, replace
from llmkernel_cache import guards
from llmkernel_cache.index import SemanticIndex, as_vector
from llmkernel_cache.key import canonical
from llmkernel_cache.settings import (
    CACHE_OPTION,
    SEMANTIC_OPTION,
    CacheSettings,
    SemanticSettings,
)

if TYPE_CHECKING:
    import concurrent.futures

    from llmkernel_cache.store import VectorRow

__all__ = ["VERSION", "Embed", "SemanticLayer", "Ticket", "Verify", "stats_of"]

#: part of every partition: entries of an older layer are never compared
VERSION = 1

#: ``embed(model, text, request)``: the vector of ``text`` (the kernel's ``aembed``)
Embed = Callable[[str, str, ChatRequest], Awaitable[list[float]]]
#: ``verify(model, stored prompt, asked prompt, request)``: whether one answer serves both
Verify = Callable[[str, str, str, ChatRequest], Awaitable[bool]]
#: ``count(request, text)``: the tokens of ``text`` for the request's model
CountTokens = Callable[[ChatRequest, str], int]
#: ``fetch(namespace, key)``: the stored answer of an entry, or ``None``
Fetch = Callable[[str, str], Awaitable[Response | None]]
#: ``load(namespace, partition, after)``: the store's rows past rowid ``after``, as a
#: future of ``(largest rowid, rows)``; ``None`` when the store keeps no vectors
Load = Callable[[str, str, int], "concurrent.futures.Future[tuple[int, list[VectorRow]]] | None"]

_FALSE = ("false", "0", "no", "off")


@attrs.frozen(kw_only=True)
class Ticket:
    """What a missed semantic lookup hands to the store of the same call."""

    partition: str
    prompt: str
    vector: Any  # numpy float32, unit length


def _last_user_text(request: ChatRequest) -> str | None:
    last = request.messages[-1] if request.messages else None
    if last is None or last.role != "user" or last.tool_calls or last.tool_call_id:
        return None
    if not last.content or any(type(p) is not TextPart for p in last.content):
        return None
    return "".join(p.text for p in last.content if isinstance(p, TextPart))


def _semantic_switch(request: ChatRequest) -> bool:
    """``cache={"semantic": False}`` or ``cache_semantic=False`` (options, or a string
    in metadata) turn the semantic layer off for one request."""
    control = request.options.get(CACHE_OPTION)
    if isinstance(control, Mapping) and control.get("semantic") is not None:
        value: Any = control["semantic"]
    else:
        value = request.options.get(SEMANTIC_OPTION)
        if value is None:
            value = request.metadata.get(SEMANTIC_OPTION)
    if value is None or value is True:
        return True
    if value is False or str(value).strip().lower() in _FALSE:
        return False
    if str(value).strip().lower() in ("true", "1", "yes", "on"):
        return True
    from llmkernel.errors import InvalidRequestError

    raise InvalidRequestError(f"option 'cache.semantic' must be true or false, not {value!r}")


class SemanticLayer:
    """The semantic half of :class:`~llmkernel_cache.cache.ResponseCache`."""

    def __init__(
        self,
        settings: CacheSettings,
        *,
        embed: Embed,
        verify: Verify | None = None,
        count_tokens: CountTokens | None = None,
        count: Callable[[str], None],
        timer: Callable[[], float],
        max_rows: int,
    ) -> None:
        self.settings = settings
        self.embed = embed
        self.verify = verify
        self.count_tokens = count_tokens
        self.count = count
        self.timer = timer
        self.index = SemanticIndex(max_rows=max_rows)
        self._loading: dict[str, concurrent.futures.Future[tuple[int, list[VectorRow]]]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ policy

    def plan(self, request: ChatRequest, namespace: str) -> tuple[SemanticSettings, str] | None:
        """The settings and the prompt to embed when the layer may serve
        ``request``, else ``None`` (the reason counted under ``skipped``)."""
        settings = self.settings.semantic_for(request.model)
        if not settings.enabled:
            return None
        reason = self._never(request, namespace, settings)
        if reason is not None:
            self.count(f"skipped.{reason}")
            return None
        prompt = _last_user_text(request)
        assert prompt is not None  # _never checked it
        return settings, prompt

    def _never(
        self, request: ChatRequest, namespace: str, settings: SemanticSettings
    ) -> str | None:
        if not _semantic_switch(request):
            return "off"
        if (
            self.settings.namespace == "tenant"
            and not request.metadata.get("tenant")
            and namespace == "default"
        ):
            return "no_tenant"
        if request.tools or request.tool_choice is not None:
            return "tools"
        n = request.options.get("n")
        if n is not None and n != 1:
            return "n"
        temperature = request.temperature
        if temperature and temperature > 0 and not settings.temperature_above_zero:
            return "temperature"
        users = 0
        for message in request.messages:
            if message.tool_calls or message.tool_call_id is not None or message.role == "tool":
                return "tools"
            if any(isinstance(p, ImagePart | FilePart) for p in message.content):
                return "images"
            users += message.role == "user"
        if users > settings.max_turns:
            return "long_conversation"
        prompt = _last_user_text(request)
        if not prompt or not prompt.strip():
            return "not_text"
        limit = settings.max_prompt_tokens
        if len(prompt) > 4 * limit:  # over the limit at any tokenizer's 4 characters a token
            return "long_prompt"
        if self.count_tokens is not None and len(prompt) > limit:
            if self.count_tokens(request, prompt) > limit:
                return "long_prompt"
        elif len(prompt.split()) > limit:
            return "long_prompt"
        return None

    def partition(
        self, request: ChatRequest, namespace: str, settings: SemanticSettings, dim: int
    ) -> str:
        """The partition of ``request``: a SHA-256 of everything but its last user
        message that changes the answer, and the embedding's model and dimension."""
        rest = replace(
            request,
            messages=(*request.messages[:-1], Message(role="user", content=(TextPart(text=""),))),
        )
        digest = hashlib.sha256()
        for part in (
            f"v{VERSION}",
            namespace,
            canonical(rest),
            settings.embedding_model,
            settings.input_prefix,
            str(dim),
        ):
            digest.update(part.encode())
            digest.update(b"\0")
        return digest.hexdigest()

    # ------------------------------------------------------------------ lookup

    async def lookup(
        self,
        request: ChatRequest,
        namespace: str,
        plan: tuple[SemanticSettings, str],
        *,
        now: float,
        fetch: Fetch,
        load: Load,
    ) -> tuple[Response | None, Ticket | None]:
        """A stored answer that means the same, or ``(None, ticket)`` for the store."""
        import asyncio

        settings, prompt = plan
        try:
            values = await self.embed(
                settings.embedding_model, settings.input_prefix + prompt, request
            )
            vector = as_vector(values)
        except Exception as exc:
            from llmkernel import log

            self.count("errors")
            log.warning(
                "llmkernel_cache.semantic.embed_failed",
                model=settings.embedding_model,
                error=f"{type(exc).__name__}: {exc}",
            )
            return None, None
        self.count("embeddings")
        if not len(vector) or not math.isfinite(float(vector.sum())):
            self.count("errors")
            return None, None
        partition = self.partition(request, namespace, settings, len(vector))
        ticket = Ticket(partition=partition, prompt=prompt, vector=vector)
        state = self.index.state(partition)
        if state is None or self.timer() - state[1] > self.settings.key_refresh:
            started = self.timer()
            future = self._load(namespace, partition, 0 if state is None else state[0], load)
            if future is None:
                if state is None:
                    self.index.load(partition, len(vector), 0, (), math.inf)
            else:
                try:
                    rowid, rows = await asyncio.wrap_future(future)
                    self.index.load(partition, len(vector), rowid, rows, started)
                except Exception as exc:
                    from llmkernel import log

                    self.count("errors")
                    log.warning(
                        "llmkernel_cache.semantic.load_failed", error=f"{type(exc).__name__}: {exc}"
                    )
        floor = min(settings.threshold, settings.same_words_threshold)
        candidates = self.index.search(partition, vector, floor=floor, limit=settings.candidates)
        asked: guards.Features | None = None
        rejected = False
        for candidate in candidates:
            if 0 < candidate.expires <= now:
                self.index.remove(partition, candidate.key)
                continue
            if asked is None:
                asked = guards.features(prompt)
            stored = candidate.features
            if stored is None:
                stored = guards.features(candidate.prompt)
                self.index.remember_features(partition, candidate.key, stored)
            same_words = set(stored.content) == set(asked.content)
            needed = settings.same_words_threshold if same_words else settings.threshold
            if candidate.similarity < needed:
                continue
            reason = guards.check(stored, asked, settings.guards)
            if reason is None and settings.verifier and self.verify is not None:
                model = request.model if settings.verifier == "self" else settings.verifier
                try:
                    same = await self.verify(model, candidate.prompt, prompt, request)
                except Exception as exc:
                    from llmkernel import log

                    self.count("errors")
                    log.warning(
                        "llmkernel_cache.semantic.verify_failed",
                        model=model,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                    same = False
                reason = None if same else "verifier"
            if reason is not None:
                self.count(f"rejected_by.{reason}")
                rejected = True
                continue
            response = await fetch(namespace, candidate.key)
            if response is None:  # evicted or expired since it was indexed
                self.index.remove(partition, candidate.key)
                continue
            self.count("hits")
            hit = replace(
                response, cache_kind="semantic", similarity=round(candidate.similarity, 6)
            )
            return hit, None
        self.count("rejected" if rejected else "misses")
        return None, ticket

    def _load(
        self, namespace: str, partition: str, after: int, load: Load
    ) -> concurrent.futures.Future[tuple[int, list[VectorRow]]] | None:
        """One read of a partition at a time (concurrent first lookups share it)."""
        with self._lock:
            future = self._loading.get(partition)
            if future is not None and not future.done():
                return future
            future = load(namespace, partition, after)
            if future is None:
                return None
            self._loading[partition] = future

        def done(_: object, partition: str = partition) -> None:
            with self._lock:
                if self._loading.get(partition) is future:
                    del self._loading[partition]

        future.add_done_callback(done)
        return future

    def stored(self, ticket: Ticket, key: str, expires: float) -> None:
        """A fresh answer was kept under ``key``: it can be found from now on."""
        self.index.add(ticket.partition, key, ticket.prompt, ticket.vector, expires)


def stats_of(counts: Counter[str], entries: int) -> dict[str, Any]:
    """The ``semantic`` section of the cache's stats from its counts."""
    lookups = counts["hits"] + counts["misses"] + counts["rejected"]
    return {
        "hits": counts["hits"],
        "misses": counts["misses"],
        "rejected": counts["rejected"],
        "hit_rate": round(counts["hits"] / lookups, 4) if lookups else 0.0,
        "rejected_by": {
            k.split(".", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("rejected_by.")
        },
        "skipped": {
            k.split(".", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("skipped.")
        },
        "embeddings": counts["embeddings"],
        "errors": counts["errors"],
        "entries": entries,
    }
