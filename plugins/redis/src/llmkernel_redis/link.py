"""One Redis server as a kernel sees it: a connection pool per event loop, a short
timeout on every call, and a breaker of its own.

Every call goes through :meth:`RedisLink.call`. When Redis does not answer in time,
refuses connections or answers with an error, the link turns **degraded**: logged
once (``llmkernel.redis.degraded``), shown by :meth:`RedisLink.stats`, and every
call raises :class:`Unavailable` at once (the caller falls back to its local
state) until ``retry_interval`` has passed. Then the next call tries Redis again
(one at a time; the others keep falling back). When it answers, the link is
**ok** again (``llmkernel.redis.recovered``), the recovery listeners run (a rate
limiter hands over what it admitted meanwhile), and coordination resumes: no
restart. Nothing is retried behind the caller's back: a call either answers or
raises :class:`Unavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, TypeVar

import attrs
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from llmkernel import log
from llmkernel_redis.scripts import Script
from llmkernel_redis.settings import redact_url

__all__ = ["RedisLink", "Unavailable"]

T = TypeVar("T")
Listener = Callable[[], Awaitable[None]]

#: what makes a call fail over to local state: Redis's own errors (connection,
#: timeout, loading, out of memory, read-only replica...), the socket's, and the
#: call's own timeout
FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


class Unavailable(Exception):
    """Redis cannot be used for this call: fall back to local state."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _reason(exc: BaseException, secrets: Sequence[str]) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text[:300]


@attrs.define(eq=False)
class _Loop:
    client: aioredis.Redis
    scripts: dict[str, Any] = attrs.field(factory=dict)


class RedisLink:
    """A pool per event loop to one Redis URL, and its breaker."""

    def __init__(
        self,
        url: str,
        *,
        name: str = "main",
        timeout: float = 0.25,
        connect_timeout: float | None = None,
        pool_size: int = 32,
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.name = name
        self.timeout = timeout
        #: a new connection's timeout: the call's when not given
        self.connect_timeout = timeout if connect_timeout is None else connect_timeout
        self.pool_size = pool_size
        self.retry_interval = retry_interval
        self.clock = clock
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Loop] = (
            weakref.WeakKeyDictionary()
        )
        self._listeners: list[Listener] = []
        self._secrets = _url_secrets(url)
        self.state: Literal["ok", "degraded"] = "ok"
        self.since = time.time()
        self.reason: str | None = None
        self._retry_at = 0.0
        self._probing = False
        self.calls = 0
        self.failures = 0
        self.outages = 0

    def __repr__(self) -> str:
        return f"<RedisLink {self.name} {redact_url(self.url)} {self.state}>"

    # ---------------------------------------------------------------- clients

    def _loop(self) -> _Loop:
        loop = asyncio.get_running_loop()
        found = self._loops.get(loop)
        if found is None:
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url,
                max_connections=self.pool_size,
                timeout=self.timeout,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.connect_timeout,
                retry=Retry(NoBackoff(), 0),
                retry_on_timeout=False,
            )
            found = self._loops[loop] = _Loop(client=aioredis.Redis.from_pool(pool))
        return found

    def client(self) -> aioredis.Redis:
        """This event loop's client (made at its first use)."""
        return self._loop().client

    # ---------------------------------------------------------------- calls

    @property
    def up(self) -> bool:
        """Whether a call would go to Redis now (ok, or due for a retry)."""
        return self.state == "ok" or (not self._probing and self.clock() >= self._retry_at)

    async def call(self, op: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """``op(client)`` within ``timeout``, or :class:`Unavailable`."""
        probe = False
        if self.state != "ok":
            if self._probing or self.clock() < self._retry_at:
                raise Unavailable(self.reason or "redis is degraded")
            self._probing = probe = True
        self.calls += 1
        try:
            try:
                async with asyncio.timeout(self.timeout):
                    result = await op(self._loop().client)
            except FAILURES as exc:
                await self._failed(exc)
                raise Unavailable(self.reason or "redis failed") from None
            if probe:
                await self._recovered()
            return result
        finally:
            if probe:
                self._probing = False

    async def script(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run ``script`` (EVALSHA, loading it on NOSCRIPT) through :meth:`call`."""

        async def run(client: aioredis.Redis) -> Any:
            scripts = self._loop().scripts
            registered = scripts.get(script.sha)
            if registered is None:
                registered = scripts[script.sha] = client.register_script(script.source)
            return await registered(keys=list(keys), args=list(args), client=client)

        return await self.call(run)

    async def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self._retry_at = self.clock() + self.retry_interval
        reason = _reason(exc, self._secrets)
        if self.state == "ok":
            self.state = "degraded"
            self.since = time.time()
            self.reason = reason
            self.outages += 1
            log.warning(
                "llmkernel.redis.degraded",
                link=self.name,
                url=redact_url(self.url),
                reason=reason,
                retry_in=self.retry_interval,
            )
        # pooled connections may all be dead (a restarted server): the next try
        # opens a fresh one instead of finding each dead one in turn
        found = self._loops.get(asyncio.get_running_loop())
        if found is not None:
            with contextlib.suppress(*FAILURES):
                await found.client.connection_pool.disconnect(inuse_connections=False)

    async def _recovered(self) -> None:
        down = time.time() - self.since
        self.state = "ok"
        self.since = time.time()
        self.reason = None
        log.info("llmkernel.redis.recovered", link=self.name, after=round(down, 3))
        for listener in list(self._listeners):
            try:
                await listener()
            except Unavailable:
                return  # down again: the link says so already
            except Exception as exc:
                log.error(
                    "llmkernel.redis.listener_failed",
                    link=self.name,
                    error=_reason(exc, self._secrets),
                )

    def on_recover(self, listener: Listener) -> None:
        """Await ``listener()`` each time Redis answers again after an outage,
        before that call returns."""
        self._listeners.append(listener)

    # ---------------------------------------------------------------- lifecycle

    async def aclose(self) -> None:
        """Close this event loop's pool; pools of other (closed) loops are dropped."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        found = self._loops.pop(loop, None) if loop is not None else None
        self._loops = weakref.WeakKeyDictionary()
        if found is not None:
            with contextlib.suppress(*FAILURES):
                await found.client.aclose()

    def forget(self) -> None:
        """In a forked child: the parent's connections are not ours to use."""
        self._loops = weakref.WeakKeyDictionary()
        self._probing = False

    def stats(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "since": round(self.since, 3),
            "reason": self.reason,
            "calls": self.calls,
            "failures": self.failures,
            "outages": self.outages,
        }


def _url_secrets(url: str) -> list[str]:
    from urllib.parse import unquote, urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    return [s for s in (parts.password, unquote(parts.password or "")) if s]
