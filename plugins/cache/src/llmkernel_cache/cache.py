"""The response cache the kernel asks before routing and tells after a fresh answer.

A lookup looks in the in-process LRU, then, only when the key may be in the
persistent store (:class:`~llmkernel_cache.known.KeyFilter`, kept fresh within
``key_refresh`` seconds), in the store on the cache's worker thread (never on the
event loop). A store puts the answer in memory at once and queues the write for
the worker, which writes what is queued in one transaction, so a miss pays nothing
for persistence and never waits on a thread.
"""

from __future__ import annotations

import collections
import math
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from llmkernel import log
from llmkernel.types import ChatRequest, Response, replace
from llmkernel_cache import codec
from llmkernel_cache.key import CACHE_OPTION, TTL_OPTION, namespace_for, request_key
from llmkernel_cache.known import KeyFilter
from llmkernel_cache.settings import CacheSettings
from llmkernel_cache.store import Entry, KeyMark, MemoryLRU, SQLiteStore, Store, Totals

if TYPE_CHECKING:
    import asyncio
    import concurrent.futures

    from llmkernel_cache.remote import RemoteEntries
    from llmkernel_cache.semantic import CountTokens, Embed, SemanticLayer, Ticket, Verify
    from llmkernel_cache.store import VectorRow

__all__ = ["ResponseCache"]

T = TypeVar("T")
#: Seconds a store waits before its write is handed to the worker, so the stores of
#: several calls share one wake of the worker thread and one transaction.
_WRITE_DELAY = 0.01
#: A drain asked this long ago that has not started (its loop stopped) is redone.
_STALE_DRAIN = 1.0
_ZERO = Decimal(0)
_STORED_FINISH = frozenset({"stop", "tool_calls"})
#: counts kept in the store's file (every process's), beside this process's own
_SHARED_COUNTS = frozenset({"hits", "memory_hits", "misses", "bypassed", "stores"})
#: seconds between two writes of the counts when nothing else is written
_COUNTS_EVERY = 1.0


def _control(request: ChatRequest, name: str) -> Any:
    """A per-request cache control: from ``options`` (the kernel keeps it from the
    provider), else from ``metadata`` (as a string)."""
    value = request.options.get(name)
    return request.metadata.get(name) if value is None else value


def _switch(value: Any) -> bool:
    if value is None or value is True:
        return True
    if value is False:
        return False
    if isinstance(value, Mapping):  # cache={"semantic": False}: the semantic layer's
        return _switch(value.get("enabled"))
    text = str(value).strip().lower()
    if text in ("false", "0", "no", "off"):
        return False
    if text in ("true", "1", "yes", "on"):
        return True
    from llmkernel.errors import InvalidRequestError

    raise InvalidRequestError(f"option {CACHE_OPTION!r} must be true or false, not {value!r}")


def _seconds(value: Any) -> float:
    try:
        seconds = float(value) if not isinstance(value, bool) else -1.0
    except (TypeError, ValueError):
        seconds = -1.0
    if seconds < 0 or math.isnan(seconds):
        from llmkernel.errors import InvalidRequestError

        raise InvalidRequestError(
            f"option {TTL_OPTION!r} must be a number of seconds >= 0, not {value!r}"
        )
    return seconds


class ResponseCache:
    """Exact-match cache: memory LRU in front of a :class:`Store`.

    ``lookup``/``store`` are what the kernel calls. ``ainvalidate``/``aclear`` (and
    the blocking ``invalidate``/``clear`` for scripts and the CLI) remove entries;
    ``stats()`` counts hits and misses of this process and the store's size.
    ``clock`` (epoch seconds) dates entries and their expiry; ``timer`` (monotonic
    seconds) times the freshness of what is known of the store's keys.

    With ``[plugin.cache] semantic`` enabled, ``embed`` (the kernel's ``aembed``, as
    the plugin gives it) is required; ``verify`` asks a chat model for the optional
    verifier and ``count_tokens`` counts a prompt's tokens for ``max_prompt_tokens``.
    """

    def __init__(
        self,
        settings: CacheSettings,
        *,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.monotonic,
        embed: Embed | None = None,
        verify: Verify | None = None,
        count_tokens: CountTokens | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock  # epoch seconds: expiry
        self.timer = timer  # monotonic seconds: freshness of the key filter
        self.memory = MemoryLRU(
            max_entries=settings.memory_entries, max_bytes=settings.memory_bytes
        )
        self._store = store
        self._store_factory: Callable[[], Store] | None = None
        if store is None and settings.resolved_path:
            path = settings.resolved_path
            self._store_factory = lambda: SQLiteStore(
                path, max_entries=settings.max_entries, max_bytes=settings.max_bytes
            )
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: set[concurrent.futures.Future[Any]] = set()
        #: the fleet's entries in Redis, between memory and SQLite (set by the plugin)
        self.remote: RemoteEntries | None = None
        self._lock = threading.Lock()
        self.hits = 0
        self.memory_hits = 0
        self.misses = 0
        self.misses_in_memory = 0  # misses settled without asking the store
        self.bypassed = 0
        self.stores = 0
        self.errors = 0
        self.semantic_counts: collections.Counter[str] = collections.Counter()
        self._unsaved: collections.Counter[str] = collections.Counter()  # for the file
        self._counts_saved = timer()
        self._totals = Totals()
        self._closed = False
        # (namespace, key) by request identity, from a lookup to the same call's store
        self._keys: dict[int, tuple[weakref.ref[ChatRequest], str, str, Ticket | None]] = {}
        # what the store may hold, known without a hop (see _may_have): written by
        # the worker only; the loop reads it
        self._scannable = (store is None and self._store_factory is not None) or (
            store is not None and hasattr(store, "scan_keys")
        )
        self._known: KeyFilter | None = None
        self._mark: KeyMark | None = None
        self._synced = -math.inf  # timer() when the scan behind _known started
        self._syncing = False
        self._sync_due = False
        self._rebuild = False
        # writes queued for the worker (one transaction per drain) and their keys
        # until written: a key is in _unwritten or, once written, in _known
        self._queue: collections.deque[Entry] = collections.deque()  # atomic ends
        self._draining = False
        self._drain_asked = -math.inf
        self._unwritten: set[str] = set()
        self.semantic: SemanticLayer | None = None
        if settings.enabled and settings.semantic_anywhere:
            if embed is None:
                raise ValueError("the semantic cache needs an embed function (the kernel's)")
            from llmkernel_cache.semantic import SemanticLayer

            self.semantic = SemanticLayer(
                settings,
                embed=embed,
                verify=verify,
                count_tokens=count_tokens,
                count=self._count_semantic,
                timer=timer,
                max_rows=max(
                    1, settings.max_entries if self._has_store else settings.memory_entries
                ),
            )

    def __repr__(self) -> str:
        return f"<ResponseCache path={self.settings.resolved_path!r}>"

    # ------------------------------------------------------------------ policy

    def _ttl(self, request: ChatRequest) -> float | None:
        """The entry lifetime for ``request`` (``0`` for no expiry), or ``None`` when
        the request is not to be cached at all."""
        settings = self.settings
        if not settings.enabled:
            return None
        if not request.options and not request.metadata and not settings.models:
            # no per-request or per-model control: the table's policy
            temperature = request.temperature
            if temperature and temperature > 0 and not settings.temperature_above_zero:
                return None
            return settings.ttl
        if not _switch(_control(request, CACHE_OPTION)):
            return None
        model = settings.models.get(request.model)
        if model is not None and model.enabled is False:
            return None
        above_zero = settings.temperature_above_zero
        if model is not None and model.temperature_above_zero is not None:
            above_zero = model.temperature_above_zero
        if request.temperature and request.temperature > 0 and not above_zero:
            return None
        ttl = _control(request, TTL_OPTION)
        if ttl is not None:
            return _seconds(ttl)
        if model is not None and model.ttl is not None:
            return model.ttl
        return settings.ttl

    def where(self, request: ChatRequest) -> tuple[str, str]:
        """The namespace and key of ``request``."""
        namespace = namespace_for(request, self.settings.namespace)
        return namespace, request_key(request, namespace)

    def _remember(
        self, request: ChatRequest, namespace: str, key: str, ticket: Ticket | None = None
    ) -> None:
        """Keep the key of a missed lookup for the ``store`` of the same call: the
        kernel looks up and then stores the same request object, so a call
        computes its key once. A lookup always computes it afresh (a request's
        options are a dict its owner may change between two calls)."""
        ident = id(request)
        keys = self._keys

        def forget(_: object, ident: int = ident) -> None:
            keys.pop(ident, None)

        keys[ident] = (weakref.ref(request, forget), namespace, key, ticket)

    def _recall(self, request: ChatRequest) -> tuple[str, str, Ticket | None]:
        """The key (and semantic ticket) :meth:`_remember` kept for this very request
        object (used once), else :meth:`where`."""
        known = self._keys.pop(id(request), None)
        if known is not None and known[0]() is request:
            return known[1], known[2], known[3]
        return (*self.where(request), None)

    # ------------------------------------------------------------------ the kernel's calls

    async def lookup(self, request: ChatRequest) -> Response | None:
        """The stored answer to ``request``, with zero cost, or ``None``."""
        if self._ttl(request) is None:
            self._count("bypassed")
            return None
        namespace, key = self.where(request)
        now = self.clock()
        response = self.memory.get(namespace, key, now)
        if response is not None:  # held ready: cost 0, nothing the store drops
            if self._keys:
                self._keys.pop(id(request), None)  # a key an earlier miss kept is stale
            with self._lock:
                self.hits += 1
                self.memory_hits += 1
                unsaved = self._unsaved
                unsaved["hits"] += 1
                unsaved["memory_hits"] += 1
            return response
        if self.remote is not None:
            found = await self.remote.get(namespace, key, now)
            if found is not None:
                body, expires = found
                response = replace(codec.loads(body), cost=_ZERO, cache_kind="exact")
                self.memory.put(namespace, key, response, len(body.encode()), expires)
                self._count("hits")
                return response
        if self._store is not None or self._store_factory is not None:
            if self._may_have(key):
                try:
                    read = self._start(lambda store: store.get(namespace, key, now))
                    if self._sync_due:
                        self._sync_soon()
                    entry = await read
                except Exception as exc:
                    self._failed("lookup", exc)
                    entry = None
                if entry is not None:
                    response = codec.loads(entry.body)
                    response = replace(response, cost=_ZERO, cache_kind="exact")
                    self.memory.put(namespace, key, response, entry.size, entry.expires)
                    self._count("hits")
                    return response
            else:
                self._count("misses_in_memory")
        self._count("misses")
        ticket = None
        if self.semantic is not None:
            plan = self.semantic.plan(request, namespace)
            if plan is not None:
                hit, ticket = await self.semantic.lookup(
                    request, namespace, plan, now=now, fetch=self._fetch, load=self._vectors
                )
                if hit is not None:
                    return hit
        self._remember(request, namespace, key, ticket)  # for the store of the same call
        if self._unsaved and self._has_store and self.timer() - self._counts_saved > _COUNTS_EVERY:
            self._drain_later()
        return None

    async def _fetch(self, namespace: str, key: str) -> Response | None:
        """The answer stored under ``key`` (memory, then the store), or ``None``."""
        now = self.clock()
        response = self.memory.get(namespace, key, now)
        if response is not None or not self._has_store:
            return response
        entry = await self._start(lambda store: store.get(namespace, key, now))
        if entry is None:
            return None
        response = replace(codec.loads(entry.body), cost=_ZERO, cache_kind="exact")
        self.memory.put(namespace, key, response, entry.size, entry.expires)
        return response

    def _vectors(
        self, namespace: str, partition: str, after: int
    ) -> concurrent.futures.Future[tuple[int, list[VectorRow]]] | None:
        """The store's rows of a partition, read on the worker after the queued
        writes; ``None`` when there is no store or it keeps no vectors."""
        if not self._has_store or (self._store is not None and not hasattr(self._store, "vectors")):
            return None
        if self._queue:
            self._drain_now()
        now = self.clock()

        def read(store: Store) -> tuple[int, list[VectorRow]]:
            vectors = getattr(store, "vectors", None)
            return (after, []) if vectors is None else vectors(namespace, partition, after, now)

        return self._worker().submit(self._in_worker, read, False)

    async def store(self, request: ChatRequest, response: Response) -> None:
        """Keep a fresh, complete answer. Refusals, cached answers and (unless
        ``store_truncated``) answers cut by ``max_tokens`` or a filter are not kept."""
        ttl = self._ttl(request)
        if ttl is None or response.cached or response.refusal:
            return
        if response.finish_reason not in _STORED_FINISH and not (
            self.settings.store_truncated and response.finish_reason == "length"
        ):
            return
        namespace, key, ticket = self._recall(request)
        body = codec.dumps(response)
        size = len(body.encode())
        now = self.clock()
        expires = now + ttl if ttl > 0 else 0.0
        kept = codec.kept(response, cost=_ZERO, cache_kind="exact")
        self.memory.put(namespace, key, kept, size, expires)
        self._count("stores")
        # only a complete answer is found by meaning
        semantic = ticket is not None and response.finish_reason == "stop"
        if semantic and self.semantic is not None and ticket is not None:
            self.semantic.stored(ticket, key, expires)
        if self.remote is not None:
            await self.remote.put(namespace, key, body, expires, now)
        if self._store is None and self._store_factory is None:
            return
        self._unwritten.add(key)
        entry = Entry(
            namespace=namespace,
            key=key,
            body=body,
            size=size,
            model=request.model,
            created=now,
            expires=expires,
        )
        if semantic and ticket is not None:
            from llmkernel_cache.index import to_bytes

            entry = attrs.evolve(
                entry,
                partition=ticket.partition,
                vector=to_bytes(ticket.vector),
                prompt=ticket.prompt,
            )
        self._queue.append(entry)
        self._drain_later()

    def _drain_later(self) -> None:
        """Have the queued writes written ``_WRITE_DELAY`` seconds from now, so the
        stores of several calls share one wake of the worker and one transaction.
        A drain that should have started long ago (its loop stopped before the
        timer) is started at once."""
        import asyncio

        now = self.timer()
        if self._draining and now - self._drain_asked < _STALE_DRAIN:
            return
        self._draining = True
        self._drain_asked = now
        try:
            asyncio.get_running_loop().call_later(_WRITE_DELAY, self._drain_now)
        except RuntimeError:  # no running loop: at once
            self._drain_now()

    def _drain_now(self) -> None:
        """Queue a drain on the worker now (reads queued after it see the writes);
        nothing when nothing is queued (a timer after a flush, or after close)."""
        self._draining = False  # before the look: a store after it asks again
        if self._queue or (self._unsaved and self._has_store):
            self._submit(self._drain)

    # ------------------------------------------------------------------ management

    async def ainvalidate(self, request: ChatRequest) -> bool:
        """Forget the answer to ``request``; whether there was one."""
        namespace, key = self.where(request)
        in_memory = self.memory.delete(namespace, key)
        if self.remote is not None:
            in_memory = await self.remote.delete(namespace, key) or in_memory
        if self._has_store:
            return await self._run(lambda store: store.delete(namespace, key)) or in_memory
        return in_memory

    def invalidate(self, request: ChatRequest) -> bool:
        """Blocking :meth:`ainvalidate`, for code outside an event loop."""
        namespace, key = self.where(request)
        in_memory = self.memory.delete(namespace, key)
        if self._has_store:
            return self._call(lambda store: store.delete(namespace, key)) or in_memory
        return in_memory

    async def aclear(self, namespace: str | None = None) -> int:
        """Remove every entry, or those of ``namespace``; how many were stored."""
        in_memory = self.memory.clear(namespace)
        if self.remote is not None:
            in_memory = max(in_memory, await self.remote.clear(namespace))
        if self._has_store:
            return await self._run(self._clear_store(namespace))
        return in_memory

    def clear(self, namespace: str | None = None) -> int:
        """Blocking :meth:`aclear`, for code outside an event loop."""
        in_memory = self.memory.clear(namespace)
        if self._has_store:
            return self._call(self._clear_store(namespace))
        return in_memory

    def _clear_store(self, namespace: str | None) -> Callable[[Store], int]:
        def clear(store: Store) -> int:
            removed = store.clear(namespace)
            self._rebuild = True  # the filter's bits for them only cost hops: drop them
            if self.semantic is not None:
                self.semantic.index.clear()  # read again from the store
            return removed

        return clear

    def counts(self) -> dict[str, int]:
        """Hit and miss counts of every process that used the store's file (this
        one's included), by name; this process's own without a store (blocking)."""
        if not self._has_store:
            with self._lock:
                mine = {k: getattr(self, k) for k in sorted(_SHARED_COUNTS)}
                mine.update({f"semantic.{k}": v for k, v in self.semantic_counts.items()})
            return mine

        def read(store: Store) -> dict[str, int]:
            self._save_counts(store)
            counts = getattr(store, "counts", None)
            return dict(counts()) if counts is not None else {}

        return self._call(read)

    def namespaces(self) -> dict[str, Totals]:
        """Entries and bytes per namespace in the store (blocking)."""
        if not self._has_store:
            return {}
        return dict(self._call(lambda store: store.namespaces()))

    def stats(self) -> dict[str, Any]:
        """Hits and misses of this process; entries and bytes in memory and in the
        store (as of its last write). Never does I/O."""
        lookups = self.hits + self.misses
        return {
            "hits": self.hits,
            "memory_hits": self.memory_hits,
            "misses": self.misses,
            "misses_in_memory": self.misses_in_memory,
            "bypassed": self.bypassed,
            "hit_rate": round(self.hits / lookups, 4) if lookups else 0.0,
            "stores": self.stores,
            "errors": self.errors,
            "memory_entries": len(self.memory),
            "memory_bytes": self.memory.bytes,
            "entries": self._totals.entries if self._has_store else len(self.memory),
            "bytes": self._totals.bytes if self._has_store else self.memory.bytes,
            "evictions": self.memory.evictions
            + (getattr(self._store, "evictions", 0) if self._store is not None else 0),
            **({} if self.semantic is None else {"semantic": self._semantic_stats()}),
        }

    def _semantic_stats(self) -> dict[str, Any]:
        from llmkernel_cache.semantic import stats_of

        assert self.semantic is not None
        with self._lock:
            counts = collections.Counter(self.semantic_counts)
        return stats_of(counts, len(self.semantic.index))

    async def aflush(self) -> None:
        """Wait for every pending write (tests, shutdown)."""
        import asyncio

        if self._queue or (self._unsaved and self._has_store):
            self._drain_now()
        while self._pending:
            pending = list(self._pending)
            await asyncio.gather(*(asyncio.wrap_future(f) for f in pending), return_exceptions=True)

    def flush(self) -> None:
        """Blocking :meth:`aflush`."""
        if self._queue or (self._unsaved and self._has_store):
            self._drain_now()
        while self._pending:
            import concurrent.futures  # pending writes: the worker made, this imported

            concurrent.futures.wait(list(self._pending))
        if self._store is not None:
            self._call(lambda store: store.flush() if hasattr(store, "flush") else None)

    async def aclose(self) -> None:
        """Finish pending writes and close the store."""
        import asyncio

        await self.aflush()
        if self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close_store)
            self._executor.shutdown(wait=False)
            self._executor = None

    def close(self) -> None:
        """Blocking :meth:`aclose`."""
        self.flush()
        if self._executor is not None:
            self._executor.submit(self._close_store).result()
            self._executor.shutdown(wait=True)
            self._executor = None

    # ------------------------------------------------------------------ the worker

    @property
    def _has_store(self) -> bool:
        return self._store is not None or self._store_factory is not None

    def _worker(self) -> concurrent.futures.ThreadPoolExecutor:
        executor = self._executor
        if executor is None:
            with self._lock:
                if self._executor is None:
                    import concurrent.futures  # at the first write: not at import

                    self._executor = concurrent.futures.ThreadPoolExecutor(
                        max_workers=1, thread_name_prefix="llmkernel-cache"
                    )
                executor = self._executor
        return executor

    def _open(self) -> Store:
        """The store, opened on the worker thread on first use."""
        if self._store is None:
            assert self._store_factory is not None
            self._store = self._store_factory()
            self._totals = self._store.totals()
        return self._store

    def _close_store(self) -> None:
        if self._store is not None and not self._closed:
            self._save_counts(self._store)
        self._closed = True
        if self._store is not None and self._store_factory is not None:
            self._store.close()
            self._store = None

    def write_at_exit(self) -> None:
        """Write what is queued (entries and counts) in the calling thread: the
        kernel's exit hook (``kernel.on_exit``), run at interpreter exit when the
        kernel was not closed. Its workers are gone by then (``concurrent.futures``
        joins them before ``atexit``), so nothing else uses the store: a program
        that never closes its kernel, or whose loop stopped before the delayed
        hand-over (sync calls run the loop only while they wait), loses no answer."""
        if self._closed or not self._has_store or not (self._queue or self._unsaved):
            return
        store = self._open()
        self._drain(store)
        flush = getattr(store, "flush", None)
        if flush is not None:
            flush()

    def _in_worker(self, fn: Callable[[Store], T], refresh: bool = False) -> T:
        store = self._open()
        result = fn(store)
        if refresh:
            self._totals = store.totals()
        return result

    async def _run(self, fn: Callable[[Store], T], refresh: bool = True) -> T:
        return await self._start(fn, refresh)

    def _start(self, fn: Callable[[Store], T], refresh: bool = False) -> asyncio.Future[T]:
        """``fn`` queued on the worker now, after this process's queued writes (a
        read finds them, a delete or clear removes them); its result to await."""
        import asyncio

        if self._queue:
            self._drain_now()
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._worker(), self._in_worker, fn, refresh)

    def _call(self, fn: Callable[[Store], T]) -> T:
        if self._queue:
            self._drain_now()
        return self._worker().submit(self._in_worker, fn, True).result()

    def _submit(self, fn: Callable[[Store], Any]) -> None:
        future = self._worker().submit(self._in_worker, fn, True)
        self._pending.add(future)
        future.add_done_callback(self._written)

    # ------------------------------------------------------------------ what the store holds

    def _may_have(self, key: str) -> bool:
        """Whether the store may hold ``key``: ``False`` settles a memory miss
        without a thread hop. Certain only for a filter at most ``key_refresh``
        seconds old (keys this process stores are known at once: queued, then in
        the filter); anything else asks the store. Schedules a refresh of the
        filter in the background once it is half that old."""
        refresh = self.settings.key_refresh
        if not self._scannable or refresh <= 0:
            return True
        age = self.timer() - self._synced
        due = age > refresh / 2 or self._known is None
        if age > refresh:
            # the caller reads the store: it queues the refresh after its read, so
            # its read does not wait for a first (whole) scan
            self._sync_due = due
            return True
        if due:
            self._sync_soon()
        # in this order: the worker adds a written key to the filter before it
        # leaves _unwritten, and a rebuilt filter is read from the store after it
        if key in self._unwritten:
            return True
        known = self._known
        return known is None or key in known

    def _sync_soon(self) -> None:
        """Queue one refresh of the key filter on the worker (none if one is queued)."""
        if self._syncing:
            return
        self._syncing = True
        self._sync_due = False
        future = self._worker().submit(self._sync)
        self._pending.add(future)  # aflush waits for it too
        future.add_done_callback(self._synced_done)

    def _sync(self) -> None:
        """On the worker: read the keys other connections wrote since the last
        scan (every key the first time, after a ``clear`` or once the filter is
        full) into the filter."""
        started = self.timer()
        try:
            if self._closed:
                return  # never reopen a store the cache closed for a scan
            store = self._open()
            scan = getattr(store, "scan_keys", None)
            if scan is None:
                return
            known = self._known
            rebuild = known is None or known.full or self._rebuild
            self._rebuild = False
            mark, keys, whole = scan(None if rebuild else self._mark)
            if whole or known is None:
                known = KeyFilter(max(1, self.settings.max_entries))
                known.update(keys)
                self._known = known
            else:
                known.update(keys)
            self._mark = mark
            self._synced = started
        finally:
            self._syncing = False

    def _synced_done(self, future: concurrent.futures.Future[Any]) -> None:
        self._pending.discard(future)
        exc = future.exception()
        if exc is not None:
            self._failed("key_scan", exc)

    def _drain(self, store: Store) -> None:
        """On the worker: write every queued entry in one transaction, then the
        counts."""
        self._draining = False  # a store from now on queues another drain
        queue, batch = self._queue, []
        while queue:
            batch.append(queue.popleft())
        self._save_counts(store)
        if not batch:
            return
        try:
            put_many = getattr(store, "put_many", None)
            if put_many is not None:
                put_many(batch)
            else:
                for entry in batch:
                    store.put(entry)
            known = self._known
            if known is not None:
                for entry in batch:
                    known.add(entry.key)
        finally:
            unwritten = self._unwritten
            for entry in batch:
                unwritten.discard(entry.key)

    def _written(self, future: concurrent.futures.Future[Any]) -> None:
        self._pending.discard(future)
        exc = future.exception()
        if exc is not None:
            self._failed("store", exc)

    def _failed(self, what: str, exc: BaseException) -> None:
        self._count("errors")
        log.warning(f"llmkernel_cache.{what}_failed", error=f"{type(exc).__name__}: {exc}")

    def _save_counts(self, store: Store) -> None:
        """Add this process's new counts to the store's (a store that keeps them)."""
        add = getattr(store, "add_counts", None)
        with self._lock:
            deltas, self._unsaved = self._unsaved, collections.Counter()
            self._counts_saved = self.timer()
        if add is not None and deltas:
            try:
                add(dict(deltas))
            except BaseException:
                with self._lock:
                    self._unsaved.update(deltas)  # kept for the next write
                raise

    def _count(self, *names: str) -> None:
        with self._lock:
            for name in names:
                setattr(self, name, getattr(self, name) + 1)
                if name in _SHARED_COUNTS:
                    self._unsaved[name] += 1

    def _count_semantic(self, name: str) -> None:
        with self._lock:
            self.semantic_counts[name] += 1
            self._unsaved[f"semantic.{name}"] += 1
