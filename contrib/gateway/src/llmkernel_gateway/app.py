"""The gateway as a plain ASGI application: a handful of routes need no framework.

``Gateway(config)`` is the app. Its lifespan builds one
:class:`~llmkernel.Kernel` per worker process, on the serving event loop, and
closes it on shutdown (providers' clients, then the kernel's closers, which flush a
ledger). Requests:

- ``POST /v1/chat/completions`` (``stream: true`` answers SSE chunks),
- ``POST /v1/embeddings``, ``GET /v1/models``,
- ``GET /health`` (liveness, and breaker states when a routing plugin reports them),
- ``GET /metrics`` (Prometheus), ``GET /`` and ``GET /status.json`` (the dashboard).

A stream's first event is awaited before the response starts, so a failure before
it gets its proper status; after it, a failure ends the stream with an error chunk
(never a silent truncation). A client that disconnects mid-stream cancels the
request: the kernel's stream is closed, which closes the upstream connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, TypeVar

from llmkernel import log
from llmkernel.config import Config
from llmkernel_gateway import failures, wire
from llmkernel_gateway.failures import Failure
from llmkernel_gateway.handoff import SHARED_DIR_ENV
from llmkernel_gateway.keys import KeyRing
from llmkernel_gateway.protocol import WRITER
from llmkernel_gateway.sessions import Sessions
from llmkernel_gateway.settings import GatewaySettings, Key, load_settings

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel
    from llmkernel_gateway.dashboard import Dashboard
    from llmkernel_gateway.metrics import Metrics
    from llmkernel_gateway.telemetry import Telemetry

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CONFIG_ENV = "LLMKERNEL_GATEWAY_CONFIG"
COOKIE = "llmkernel_gateway_session"  # a login session's id, never a key
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_JSON = (b"content-type", b"application/json")
_CONTROL = re.compile(b"[\x00-\x1f\x7f]")
# The kernel's own deadline (the call's ``timeout``) ends a slow call with a
# TimeoutError naming the provider; the gateway's guard fires only if it did not.
_SLACK = 1.0


C = TypeVar("C")  # a parsed call: wire.ChatCall or wire.EmbedCall


class ClientGone(Exception):
    """The client disconnected before its request was read."""


class Gateway:
    """The ASGI app. ``plugins`` are extra plugin objects for the kernel (tests)."""

    def __init__(
        self,
        config: Config,
        *,
        plugins: Iterable[object] = (),
        settings: GatewaySettings | None = None,
    ) -> None:
        self.config = config
        self.settings = settings or load_settings(config)
        self.keys = KeyRing(self.settings.key_list())
        self.connection_limits = self.settings.connection_limits()  # read by the protocol
        self.sessions = Sessions(self.settings.session_ttl, os.environ.get(SHARED_DIR_ENV))
        self._plugins = list(plugins)
        from llmkernel_gateway.admin import Admin
        from llmkernel_gateway.runtime import Runtime

        self.runtime = Runtime(self)  # keys, deployments and config changed live
        self.admin = Admin(self)
        self.kernel: Kernel | None = None
        self._dashboard: Dashboard | None = None
        self.metrics: Metrics | None = None
        self.telemetry: Telemetry | None = None
        self.started = 0.0
        self._prefix = secrets.token_hex(4)
        self._counter = itertools.count(1)
        self._routes: dict[tuple[str, str], Callable[..., Awaitable[None]]] = {
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/chat/completions"): self._chat,
            ("POST", "/v1/embeddings"): self._embeddings,
            ("POST", "/embeddings"): self._embeddings,
            ("GET", "/v1/models"): self._models,
            ("GET", "/models"): self._models,
            ("GET", "/health"): self._health,
            ("GET", "/metrics"): self._metrics,
            ("GET", "/"): self._status_page,
            ("GET", "/status.json"): self._status_json,
            ("POST", "/login"): self._login,
            ("POST", "/logout"): self._logout,
        }
        from llmkernel_gateway.apis import Apis  # the Responses and Messages APIs

        self.apis = Apis(self)
        self._routes.update(self.apis.routes())
        self._paths = {path for _, path in self._routes}

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.shutdown()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        """Build the kernel on the serving loop, and the metrics."""
        from llmkernel.kernel import Kernel
        from llmkernel_gateway.handoff import require_plugins
        from llmkernel_gateway.telemetry import Telemetry
        from llmkernel_gateway.transport import HttpxTransportPlugin

        telemetry = self.telemetry = Telemetry(self.settings)
        self.metrics = telemetry.metrics
        runtime = self.runtime
        await runtime.open()  # the key store: its keys' limits are in the kernel's config
        sessions = self.apis.sessions if self.apis.session_header else None
        plugins = [
            *self._plugins,
            *self.apis.plugins(),
            *telemetry.plugins(),
            *runtime.plugins(sessions),
        ]
        if self.settings.transport == "httpx":
            plugins.append(HttpxTransportPlugin())
        keys = self.keys.keys()
        self.kernel = Kernel(runtime.derive(self.config, keys), plugins=plugins)
        try:
            require_plugins(keys, [p.name for p in self.kernel.plugins if p.status == "loaded"])
        except Exception:
            await self.kernel.aclose()
            await runtime.stop()
            raise
        self.apis.startup(self.kernel)
        telemetry.start(self.kernel, keys, self._paths)
        runtime.start()
        self.started = time.time()

    def reconfigured(self, kernel: Kernel) -> None:
        """After the kernel swapped in a new config: what was read from the old one."""
        if self.telemetry is not None:
            self.telemetry.configure(kernel, self.keys.keys())
        dashboard, self._dashboard = self._dashboard, None  # the new config's ledger
        if dashboard is not None:
            dashboard.close()

    async def shutdown(self) -> None:
        """Close the kernel (its providers and closers: a ledger flushes here)."""
        if self.telemetry is not None:
            await self.telemetry.stop()
        await self.runtime.stop()  # old configs still draining close first
        if self._dashboard is not None:
            self._dashboard.close()
        if self.kernel is not None:
            await self.kernel.aclose()
        await self.apis.shutdown()
        if self.telemetry is not None:
            self.telemetry.flush()  # the last spans, after the kernel's
        log.info("gateway.stopped", pid=os.getpid())
        from llmkernel_gateway import loglines

        loglines.flush()

    # ------------------------------------------------------------------ requests

    def _request_id(self, scope: Scope) -> str:
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                text: str = value.decode("latin-1")
                if _REQUEST_ID.match(text):
                    return text
        return f"{self._prefix}{next(self._counter):x}"

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        rid = self._request_id(scope)
        handler = self._routes.get((scope["method"], scope["path"]))
        known = False
        if handler is None:  # a path with an id: /v1/responses/{id}, /v1/models/{id}
            handler, known = self.apis.match(scope["method"], scope["path"])
            if handler is None and scope["path"].startswith("/admin/"):
                handler, known = self.admin.match(scope["method"], scope["path"])
        try:
            if handler is None:
                if known or scope["path"] in self._paths:
                    failure = Failure(
                        status=405,
                        message=f"method {scope['method']} is not allowed on {scope['path']}",
                        type="invalid_request_error",
                        kind="method",
                    )
                else:
                    failure = failures.not_found(
                        f"no route {scope['method']} {scope['path']}", code="not_found", param=None
                    )
                await self._fail(scope, send, failure, rid)
                return
            gauge = self.metrics.in_flight if self.metrics is not None else None
            if gauge is not None:
                gauge.inc()
            spans = self.telemetry.spans if self.telemetry is not None else None
            span = spans.start(scope) if spans is not None else None
            try:
                await handler(scope, receive, send, rid, started)
            finally:
                if span is not None and spans is not None:
                    spans.end(span)
                if gauge is not None:
                    gauge.dec()
        except ClientGone:
            return
        except Exception as exc:  # a bug: the API's error, never uvicorn's text/plain 500
            log.error(
                "gateway.internal_error",
                request_id=rid,
                path=scope["path"],
                error=f"{type(exc).__name__}: {exc}",
            )
            failure = failures.internal(rid)
            self._done(rid, "other", None, started, failure=failure, model="")
            with contextlib.suppress(Exception):  # unless the answer had begun
                await self._fail(scope, send, failure, rid)

    async def _fail(self, scope: Scope, send: Send, failure: Failure, rid: str) -> None:
        headers = [_JSON, (b"x-request-id", rid.encode()), *failure.headers()]
        body = wire.dumps(failure.body())
        # a refused body (413) is not read: the connection ends rather than carry it
        await _respond(scope, send, failure.status, body, headers, close=failure.status == 413)

    def _authenticate(self, scope: Scope, *, cookie: bool = False) -> Key | Failure | None:
        """The caller's key; ``None`` when no keys are configured (loopback only)."""
        if not self.keys:
            return None
        presented = session = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and token.strip():
                    presented = token.strip()
            elif name == b"x-api-key" and presented is None:
                presented = value.decode("latin-1").strip()
            elif cookie and name == b"cookie" and session is None:
                session = _cookie(value.decode("latin-1"), COOKIE)
        if not presented and session:
            named = self.keys.named(self.sessions.lookup(session) or "")
            if named is not None:
                return named
            return failures.unauthorized("the login session has ended: log in again")
        if not presented:
            return failures.unauthorized("no API key: send it as 'Authorization: Bearer <key>'")
        now = time.time()
        key = self.keys.check(presented, now)
        if isinstance(key, str):
            return failures.unauthorized(key)
        self.runtime.used[key.name] = now
        return key

    def _admin(self, scope: Scope) -> Key | Failure | None:
        """Status and metrics: any key, or only admin keys when some key is admin."""
        key = self._authenticate(scope, cookie=True)
        if isinstance(key, Key) and self.keys.has_admin and not key.admin:
            return failures.Failure(
                status=403,
                message=f"key {key.name!r} is not an admin key",
                type="permission_error",
                code="admin_only",
                kind="permission",
            )
        return key

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | Failure:
        limit = self.settings.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return failures.bad_request("the Content-Length header is not a number")
                if declared > limit:
                    return _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            body = message.get("body", b"")
            if body:
                size += len(body)
                if size > limit:
                    return _too_large(limit)
                chunks.append(body)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _begin(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        rid: str,
        fail: Callable[[Scope, Send, Failure, str], Awaitable[None]] | None = None,
    ) -> tuple[Key | None, dict[str, Any]] | None:
        """Authenticate and read the JSON body; answer the failure (with ``fail``,
        the API's own error shape, default OpenAI's) and return None."""
        fail = fail or self._fail
        key = self._authenticate(scope)
        if isinstance(key, Failure):
            await fail(scope, send, key, rid)
            return None
        body = await self._read_body(scope, receive)
        if isinstance(body, Failure):
            await fail(scope, send, body, rid)
            return None
        try:
            return key, wire.parse_json(body, self.settings.max_json_depth)
        except wire.BadRequest as exc:
            await fail(scope, send, failures.bad_request(exc.message, exc.param), rid)
            return None

    # ------------------------------------------------------------------ chat

    async def _chat(
        self, scope: Scope, receive: Receive, send: Send, rid: str, started: float
    ) -> None:
        begun = await self._begin(scope, receive, send, rid)
        if begun is None:
            return
        key, data = begun
        route = "stream" if data.get("stream") is True else "chat"
        call = await self._parse(wire.chat_call, data, key, route, scope, send, rid, started)
        if call is None:
            return
        if call.extras:  # OpenAI-only fields: options, or a 400 naming the field
            call = await self.apis.chat_extras(call, scope, send, rid, route, key, started)
            if call is None:
                return
        metadata = self.apis.metadata(scope, key)  # the key's, and the session (experiments)
        if call.stream:
            await self._stream(scope, receive, send, rid, started, key, call, metadata)
            return
        kernel = self.kernel
        assert kernel is not None, "the gateway's lifespan did not run"
        try:
            async with asyncio.timeout(self.settings.request_timeout + _SLACK):
                response = await kernel.achat(
                    call.model,
                    call.messages,
                    metadata=metadata,
                    timeout=self.settings.request_timeout,
                    **call.kwargs,
                )
        except Exception as exc:
            failure = self._failure(exc, rid, call.model)
            self._done(rid, route, key, started, failure=failure, model=call.model)
            await self._fail(scope, send, failure, rid)
            return
        served = f"{response.provider}/{response.model}"
        body = wire.completion_json(
            response,
            id=f"chatcmpl-{rid}",
            created=int(time.time()),
            model=served,
            functions=call.functions,
        )
        headers = [_JSON, *_extension_headers(rid, response)]
        await _respond(scope, send, 200, wire.dumps(body), headers)
        self._done(rid, route, key, started, model=call.model, response=response)

    def _failure(self, exc: BaseException, rid: str, model: str) -> Failure:
        if isinstance(exc, TimeoutError):
            return failures.timeout(self.settings.request_timeout)
        failure = failures.from_exception(exc)
        if failure is None:
            log.error(
                "gateway.internal_error",
                request_id=rid,
                model=model,
                error=f"{type(exc).__name__}: {exc}",
            )
            return failures.internal(rid)
        return failure

    async def _stream(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        rid: str,
        started: float,
        key: Key | None,
        call: wire.ChatCall,
        metadata: Mapping[str, str],
    ) -> None:
        kernel = self.kernel
        assert kernel is not None, "the gateway's lifespan did not run"
        route = "stream"
        timeout = self.settings.request_timeout
        deadline = asyncio.get_running_loop().time() + timeout + _SLACK
        try:
            stream = kernel.astream(
                call.model, call.messages, metadata=metadata, timeout=timeout, **call.kwargs
            )
        except Exception as exc:
            failure = self._failure(exc, rid, call.model)
            self._done(rid, route, key, started, failure=failure, model=call.model)
            await self._fail(scope, send, failure, rid)
            return
        # The first event decides the status: until then a failure is a plain error.
        try:
            async with asyncio.timeout_at(deadline):
                first = await anext(stream)
        except BaseException as exc:
            await _close(stream)
            if not isinstance(exc, Exception):
                raise
            failure = self._failure(exc, rid, call.model)
            self._done(rid, route, key, started, failure=failure, model=call.model)
            await self._fail(scope, send, failure, rid)
            return
        ttft = time.perf_counter() - started
        chunker = wire.Chunker(
            id=f"chatcmpl-{rid}",
            created=int(time.time()),
            model=call.model,
            include_usage=call.include_usage,
            functions=call.functions,
        )
        pump = asyncio.ensure_future(self._pump(scope, send, stream, first, chunker, rid, deadline))
        watch = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((pump, watch), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the server gave up on us (shutdown timeout)
            pump.cancel()
            watch.cancel()
            await _close(stream)
            raise
        if not pump.done():  # the client went away: stop the upstream request
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
            await _close(stream)
            failure = Failure(
                status=499, message="client disconnected", type="cancelled", kind="cancelled"
            )
            self._done(rid, route, key, started, failure=failure, model=call.model)
            return
        watch.cancel()
        error = pump.result()
        response = stream.response
        if error is not None or response is None:
            failure = error or failures.internal(rid)
            self._done(rid, route, key, started, failure=failure, model=call.model, status=200)
            return
        self._done(rid, route, key, started, model=call.model, response=response, ttft=ttft)

    async def _pump(
        self,
        scope: Scope,
        send: Send,
        stream: Any,
        first: Any,
        chunker: wire.Chunker,
        rid: str,
        deadline: float,
    ) -> Failure | None:
        """Send the stream; return the failure that cut it, if any."""
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            (b"x-request-id", rid.encode()),
        ]
        extensions = scope.get("extensions")
        writer = extensions.get(WRITER) if extensions else None
        # the cost as a trailer field, for a client that says it reads them (TE)
        trailers = writer is not None and _wants_trailers(scope)
        if trailers:
            headers.append((b"trailer", b"x-llmkernel-cost"))
        context = getattr(stream, "context", None)
        attempts = getattr(context, "attempts", None)
        tick = None
        if attempts:  # the candidate streaming now (cost and usage come in the last chunk)
            candidate = attempts[-1].candidate
            tick = self.telemetry.chunks(candidate) if self.telemetry is not None else None
            headers += [
                (b"x-llmkernel-provider", _header(candidate.provider)),
                (b"x-llmkernel-model", _header(candidate.model)),
                (b"x-llmkernel-attempts", str(len(attempts)).encode()),
            ]
        hit = getattr(stream, "response", None)  # a cached answer is known before it streams
        if hit is not None and getattr(hit, "cached", False):
            headers.append((b"x-llmkernel-cache", _cache_header(hit)))
        start = {"type": "http.response.start", "status": 200, "headers": headers}
        body = chunker.start() + chunker.event(first)
        failure: Failure | None = None
        try:
            async with asyncio.timeout_at(deadline):
                part = {"type": "http.response.body", "body": wire.encode(body), "more_body": True}
                if writer is not None:
                    await writer.start_stream(scope, send, start, part)
                else:
                    await send(start)
                    await send(part)
                async for event in stream:
                    if event.type == "error":
                        continue  # the kernel raises it next
                    text = chunker.event(event)
                    if text:
                        await send(
                            {
                                "type": "http.response.body",
                                "body": wire.encode(text),
                                "more_body": True,
                            }
                        )
                        if tick is not None:
                            tick()
            tail = chunker.done()
        except Exception as exc:
            failure = self._failure(exc, rid, stream.request.model)
            tail = chunker.error(failure.body())
        finally:
            await _close(stream)
        last = {"type": "http.response.body", "body": wire.encode(tail), "more_body": False}
        if trailers and writer is not None:
            cost = chunker.cost  # from the usage event: None when cut before it
            value = b"unpriced" if cost is None else str(cost).encode()
            await writer.finish_stream(scope, send, last, [(b"x-llmkernel-cost", value)])
        else:
            await send(last)
        return failure

    # ------------------------------------------------------------------ embeddings

    async def _parse(
        self,
        read: Callable[[Any], C],
        data: Any,
        key: Any,
        route: str,
        scope: Scope,
        send: Send,
        rid: str,
        started: float,
        fail: Callable[[Scope, Send, Failure, str], Awaitable[None]] | None = None,
    ) -> C | None:
        """The call in the body, if it is well formed and the key may use its model;
        else the failure is answered (with ``fail``, default OpenAI's shape) and
        logged, and ``None`` returned."""
        fail = fail or self._fail
        try:
            call = read(data)
        except wire.BadRequest as exc:
            failure = failures.bad_request(exc.message, exc.param)
            self._done(rid, route, key, started, failure=failure, model=_str(data.get("model")))
            await fail(scope, send, failure, rid)
            return None
        model: str = getattr(call, "model")  # noqa: B009  (both call types have one)
        if key is not None and not key.allows(model):
            failure = failures.forbidden(f"key {key.name!r} may not use model {model!r}")
            self._done(rid, route, key, started, failure=failure, model=model)
            await fail(scope, send, failure, rid)
            return None
        return call

    async def _embeddings(
        self, scope: Scope, receive: Receive, send: Send, rid: str, started: float
    ) -> None:
        begun = await self._begin(scope, receive, send, rid)
        if begun is None:
            return
        key, data = begun
        route = "embeddings"
        call = await self._parse(wire.embed_call, data, key, route, scope, send, rid, started)
        if call is None:
            return
        kernel = self.kernel
        assert kernel is not None, "the gateway's lifespan did not run"
        metadata = self.apis.metadata(scope, key)
        try:
            async with asyncio.timeout(self.settings.request_timeout + _SLACK):
                response = await kernel.aembed(
                    call.model,
                    call.inputs,
                    dimensions=call.dimensions,
                    metadata=metadata,
                    timeout=self.settings.request_timeout,
                )
        except Exception as exc:
            failure = self._failure(exc, rid, call.model)
            self._done(rid, route, key, started, failure=failure, model=call.model)
            await self._fail(scope, send, failure, rid)
            return
        served = f"{response.provider}/{response.model}"
        body = wire.embedding_json(response, model=served, as_base64=call.base64)
        headers = [_JSON, *_extension_headers(rid, response)]
        await _respond(scope, send, 200, wire.dumps(body), headers)
        self._done(rid, route, key, started, model=call.model, response=response)

    # ------------------------------------------------------------------ bookkeeping

    def _done(
        self,
        rid: str,
        route: str,
        key: Key | None,
        started: float,
        *,
        model: str,
        response: Any = None,
        failure: Failure | None = None,
        ttft: float | None = None,
        status: int | None = None,
    ) -> None:
        """One log line, the metrics and the status page's numbers for a request."""
        latency = time.perf_counter() - started
        key_name = key.name if key is not None else ""
        code = status if status is not None else (failure.status if failure else 200)
        usage = getattr(response, "usage", None)
        cost = getattr(response, "cost", None)
        cached = bool(getattr(response, "cached", False))
        if self.telemetry is not None:
            self.telemetry.request_done(
                route=route,
                key=key_name,
                model=model,
                status=code,
                latency=latency,
                response=response,
                error_kind=failure.kind if failure else None,
                semantic=cached and getattr(response, "cache_kind", None) == "semantic",
                ttft=ttft,
                rid=rid,
            )
        if self.settings.access_log:
            fields: dict[str, Any] = {
                "request_id": rid,
                "route": route,
                "status": code,
                "key": key_name or None,
                "tenant": key.tenant if key is not None else None,
                "model": model,
                "latency_ms": round(latency * 1000, 2),
            }
            if response is not None:
                fields["provider"] = response.provider
                fields["served_model"] = response.model
                fields["attempts"] = response.attempts
                if usage is not None:
                    fields["input_tokens"] = usage.input_tokens
                    fields["output_tokens"] = usage.output_tokens
                fields["cost"] = None if cost is None else str(cost)
                fields["cached"] = cached
                if ttft is not None:
                    fields["ttft_ms"] = round(ttft * 1000, 2)
            if failure is not None:
                fields["error"] = failure.kind
            log.info("gateway.request", **fields)

    # ------------------------------------------------------------------ small routes

    def _model_ids(self, key: Key | None) -> list[tuple[str, str]]:
        """``(id, owned_by)`` for every model and alias this key may use."""
        kernel = self.kernel
        assert kernel is not None
        seen: dict[str, str] = {}
        for name, provider in sorted(kernel.providers().items()):
            for model in provider.declared_models():
                seen.setdefault(f"{name}/{model}", name)
        for alias in sorted(self.config.models):
            seen.setdefault(alias, "llmkernel")
        return [(m, o) for m, o in seen.items() if key is None or key.allows(m)]

    async def _models(
        self, scope: Scope, receive: Receive, send: Send, rid: str, started: float
    ) -> None:
        key = self._authenticate(scope)
        if isinstance(key, Failure):
            await self._fail(scope, send, key, rid)
            return
        data = [
            {"id": model, "object": "model", "created": 0, "owned_by": owner}
            for model, owner in self._model_ids(key)
        ]
        body = wire.dumps({"object": "list", "data": data})
        await _respond(scope, send, 200, body, [_JSON, (b"x-request-id", rid.encode())])

    def _kernel_stats(self) -> Mapping[str, Any]:
        stats = getattr(self.kernel, "stats", None)
        if stats is None:
            return {}
        try:
            result = stats()
        except Exception as exc:
            log.warning("gateway.kernel_stats_failed", error=f"{type(exc).__name__}: {exc}")
            return {}
        return result if isinstance(result, Mapping) else {}

    async def _health(
        self, scope: Scope, receive: Receive, send: Send, rid: str, started: float
    ) -> None:
        deployments: dict[str, Any] = {}
        stats = self._kernel_stats()
        for name, row in stats.get("deployments", {}).items():
            if isinstance(row, Mapping):
                state = row.get("breaker") or row.get("state")
                if isinstance(state, Mapping):  # llmkernel-routing: the breaker's details
                    deployments[name] = {"breaker": state.get("state"), **dict(state)}
                elif state is not None:
                    deployments[name] = {"breaker": state}
        down = any(row.get("breaker") == "open" for row in deployments.values())
        status = "degraded" if down else "ok"  # a deployment's breaker is open
        answer: dict[str, Any] = {"status": status, "pid": os.getpid(), "deployments": deployments}
        answer.update(redis_health(stats.get("redis")))
        if (
            self.keys
            and not self.settings.public_health
            and not isinstance(self._admin(scope), Key)
        ):
            answer = {"status": answer["status"]}  # a load balancer's probe: nothing more
        body = wire.dumps(answer)  # 200 even when degraded: the instance still serves
        await _respond(scope, send, 200, body, [_JSON, (b"x-request-id", rid.encode())])

    async def _metrics(
        self, scope: Scope, receive: Receive, send: Send, rid: str, started: float
    ) -> None:
        if not self.settings.public_metrics:
            key = self._admin(scope)
            if isinstance(key, Failure):
                await self._fail(scope, send, key, rid)
                return
        assert self.telemetry is not None
        text, content_type = self.telemetry.render()
        await _respond(scope, send, 200, text, [(b"content-type", content_type.encode())])

    def dashboard(self) -> Dashboard:
        """The dashboard's reader of the current config's ledger."""
        from llmkernel_gateway.dashboard import Dashboard

        assert self.kernel is not None, "the gateway's lifespan did not run"
        if self._dashboard is None:
            self._dashboard = Dashboard(self.kernel)
        return self._dashboard

    async def status(self) -> dict[str, Any]:
        """What the dashboard shows, as JSON (:mod:`llmkernel_gateway.dashboard`);
        the ledger is read in a worker thread."""

        kernel_stats = self._kernel_stats()
        found = await asyncio.to_thread(
            self.dashboard().collect,
            keys=self.keys.keys(),  # the config file's and the key store's
            deployments=self.telemetry.deployment_rows() if self.telemetry else {},
            kernel_stats=kernel_stats,
            redis_configured=bool(self.config.redis),
            known=self._known_deployment,
        )
        fleet = await self.runtime.fleet()
        if fleet is not None:
            found["fleet"] = fleet
        overrides = self.runtime.overrides  # PATCH /admin/deployments
        rows = found.setdefault("deployments", {})
        for name in [*rows, *(n for n in overrides.table if n not in rows)]:
            rows.setdefault(name, {"breaker": None})["live"] = overrides.of(name)
        for name, row in rows.items():  # the provider's health check (the fleet's newest)
            found_row = (kernel_stats.get("deployments") or {}).get(name)
            breaker = found_row.get("breaker") if isinstance(found_row, Mapping) else None
            check = breaker.get("health_check") if isinstance(breaker, Mapping) else None
            row["health_check"] = dict(check) if isinstance(check, Mapping) else None
        return {
            "now": time.time(),
            "started": self.started,
            "pid": os.getpid(),
            "refresh_seconds": self.settings.status_refresh,
            **found,
        }

    def _known_deployment(self, name: str) -> bool:
        labels = self.metrics.labels if self.metrics is not None else None
        provider, _, model = name.partition("/")
        return labels is None or labels.deployment(provider, model) == (provider, model)

    async def _status_json(
        self, scope: Scope, receive: Receive, send: Send, rid: str, started: float
    ) -> None:
        key = self._admin(scope)
        if isinstance(key, Failure):
            await self._fail(scope, send, key, rid)
            return
        headers = [_JSON, (b"cache-control", b"no-store")]
        await _respond(scope, send, 200, wire.dumps(await self.status()), headers)

    async def _status_page(
        self, scope: Scope, receive: Receive, send: Send, rid: str, started: float
    ) -> None:
        from llmkernel_gateway import page

        key = self._admin(scope)
        html_type = (b"content-type", b"text/html; charset=utf-8")
        if isinstance(key, Failure):
            await _respond(scope, send, key.status, page.login(key.message).encode(), [html_type])
            return
        headers = [html_type, (b"cache-control", b"no-store")]
        await _respond(scope, send, 200, page.render(await self.status()).encode(), headers)

    async def _login(
        self, scope: Scope, receive: Receive, send: Send, rid: str, started: float
    ) -> None:
        """The status page's login form: a valid key opens a session, whose random id
        (never the key) becomes an HttpOnly, SameSite=Strict cookie (Secure over
        TLS) that expires with it."""
        from urllib.parse import parse_qs

        from llmkernel_gateway import page

        body = await self._read_body(scope, receive)
        html_type = (b"content-type", b"text/html; charset=utf-8")
        if isinstance(body, Failure):
            await self._fail(scope, send, body, rid)
            return
        presented = (parse_qs(body.decode("utf-8", "replace")).get("key") or [""])[0].strip()
        key = self.keys.lookup(presented) if presented else None
        if key is None or (self.keys.has_admin and not key.admin):
            text = page.login("that key is not valid here").encode()
            await _respond(scope, send, 401, text, [html_type])
            return
        token = self.sessions.create(key.name)
        ttl = int(self.settings.session_ttl)
        await _respond(scope, send, 303, b"", [(b"location", b"/"), _set_cookie(scope, token, ttl)])

    async def _logout(
        self, scope: Scope, receive: Receive, send: Send, rid: str, started: float
    ) -> None:
        """End the status page's session (and drop its cookie)."""
        for name, value in scope["headers"]:
            if name == b"cookie":
                token = _cookie(value.decode("latin-1"), COOKIE)
                if token:
                    self.sessions.end(token)
        await _respond(scope, send, 303, b"", [(b"location", b"/"), _set_cookie(scope, "", 0)])


# ---------------------------------------------------------------------- helpers


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _too_large(limit: int) -> Failure:
    return failures.bad_request(
        f"the request body is larger than the gateway's limit of {limit} bytes "
        "([plugin.gateway] max_body_bytes)",
        status=413,
    )


def _wants_trailers(scope: Scope) -> bool:
    return any(name == b"te" and b"trailers" in value.lower() for name, value in scope["headers"])


def _set_cookie(scope: Scope, token: str, max_age: int) -> tuple[bytes, bytes]:
    secure = "; Secure" if scope.get("scheme") == "https" else ""
    text = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    return (b"set-cookie", text.encode("latin-1"))


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None


def _header(text: str) -> bytes:
    """``text`` as a header value: an upstream's control characters (a line break in
    its ``model``) dropped, never written and never a failed answer."""
    value = text.encode("utf-8", "backslashreplace")
    return _CONTROL.sub(b"", value) if _CONTROL.search(value) else value


def _extension_headers(rid: str, response: Any) -> list[tuple[bytes, bytes]]:
    """Provider, model, cost, cache hit, attempts and request id, on every answer."""
    cost = response.cost
    return [
        (b"x-request-id", rid.encode()),
        (b"x-llmkernel-provider", _header(response.provider)),
        (b"x-llmkernel-model", _header(response.model)),
        (b"x-llmkernel-cost", b"unpriced" if cost is None else str(cost).encode()),
        (b"x-llmkernel-cache", _cache_header(response)),
        (b"x-llmkernel-attempts", str(response.attempts).encode()),
    ]


def _cache_header(response: Any) -> bytes:
    """``x-llmkernel-cache``: ``miss``, ``hit`` (exact) or ``semantic``."""
    if not getattr(response, "cached", False):
        return b"miss"
    return b"semantic" if getattr(response, "cache_kind", None) == "semantic" else b"hit"


async def _respond(
    scope: Scope,
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    close: bool = False,
) -> None:
    """A whole answer; ``close``: end the connection after it (the client may still
    be sending a body nobody reads)."""
    extensions = scope.get("extensions")
    writer = extensions.get(WRITER) if extensions else None  # llmkernel serve's protocol
    if writer is not None and writer.respond(scope, status, headers, body, close=close):
        return
    headers.append((b"content-length", b"%d" % len(body)))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _disconnected(receive: Receive) -> None:
    """Return when the client has gone."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _close(stream: Any) -> None:
    with contextlib.suppress(Exception):
        await stream.aclose()


def create_app() -> Gateway:
    """The app factory for ``uvicorn --factory`` and ``--workers``: the config path
    comes from ``$LLMKERNEL_GATEWAY_CONFIG`` (else the usual search). A worker sets
    up its own logging (the access log on stderr), as ``llmkernel serve`` does."""
    from llmkernel_gateway import loglines

    path = os.environ.get(CONFIG_ENV) or None
    gateway = Gateway(Config.load(path))
    if os.environ.get(SHARED_DIR_ENV):  # a worker of llmkernel serve --workers N
        loglines.configure(gateway.settings.access_log)
    return gateway


__all__ = ["CONFIG_ENV", "Gateway", "create_app"]


def redis_health(redis: Any) -> dict[str, Any]:
    """``/health``'s part of the shared Redis (``[redis]`` set): each link's state,
    and ``status: degraded`` with the reasons (passwords already redacted by the
    link) while one is degraded: the instance serves on local state meanwhile."""
    if not isinstance(redis, Mapping):
        return {}
    links = {"main": redis}
    if isinstance(redis.get("cache"), Mapping):
        links["cache"] = redis["cache"]
    answer: dict[str, Any] = {"redis": {name: link.get("state") for name, link in links.items()}}
    down = [
        f"redis {name}: {link.get('reason') or 'unavailable'}"
        for name, link in links.items()
        if link.get("state") == "degraded"
    ]
    if down:
        answer["status"] = "degraded"
        answer["degraded"] = down
    return answer
