"""The routes of the Responses and Messages APIs, and the models in both shapes.

Each request goes the way a Chat Completions request goes (the same key check and
per-key rate limit, body bounds, the kernel's whole pipeline: budgets, limits,
cache, fallback, ledger, metrics): the API's module (:mod:`~llmkernel_gateway.
responses`, :mod:`~llmkernel_gateway.messages`) turns the body into a
:class:`~llmkernel.types.ChatRequest`, the kernel answers, and the module turns the
answer back. Failures answer in the API's own error shape.

Streams (:meth:`Apis.relay`): the first event is awaited before the answer starts,
so a failure before it gets its status and the kernel's fallback has had its
chance; after it nothing is retried or switched (the kernel's stream is fixed to
its candidate), a failure ends the stream with the API's error event, and a client
that disconnects cancels the upstream call at once (the kernel records what was
spent). A stored response is written before its last event (or its answer) goes
out, so a client that continues from it never races the write.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from llmkernel import log
from llmkernel_gateway import affinity, extras, failures, messages, responses, wire
from llmkernel_gateway.failures import Failure
from llmkernel_gateway.settings import Key

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel
    from llmkernel.types import ChatRequest, Response
    from llmkernel_gateway.app import Gateway, Receive, Scope, Send
    from llmkernel_gateway.store import ResponseStore

Fail = Callable[["Scope", "Send", Failure, str], Awaitable[None]]
Handler = Callable[..., Awaitable[None]]

_SLACK = 1.0
_JSON = (b"content-type", b"application/json")
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_END = object()
_MODELS_PAGE = 1000


class Apis:
    """The Responses and Messages routes of one :class:`~llmkernel_gateway.app.Gateway`."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        settings = gateway.settings
        self.session_header = settings.session_header.lower().encode("latin-1")
        self.sessions = affinity.Sessions(
            max_sessions=settings.max_sessions, ttl=settings.affinity_ttl
        )
        self.store: ResponseStore | None = None

    # ------------------------------------------------------------------ wiring

    def plugins(self) -> list[object]:
        """Kernel plugins these routes need (session affinity)."""
        return [affinity.AffinityPlugin(self.sessions)] if self.session_header else []

    def startup(self, kernel: Kernel) -> None:
        from llmkernel_gateway.store import open_store

        self.store = open_store(self.gateway.settings)

    async def shutdown(self) -> None:
        if self.store is not None:
            await self.store.aclose()

    def routes(self) -> dict[tuple[str, str], Handler]:
        table: dict[tuple[str, str], Handler] = {}
        for prefix in ("/v1", ""):
            table[("POST", f"{prefix}/responses")] = self.create_response
            table[("POST", f"{prefix}/messages")] = self.create_message
            table[("POST", f"{prefix}/messages/count_tokens")] = self.count_tokens
            table[("GET", f"{prefix}/models")] = self.list_models
        return table

    def match(self, method: str, path: str) -> tuple[Handler | None, bool]:
        """The handler of a path with an id in it, and whether the path is known."""
        for prefix in ("/v1/", "/"):
            if path.startswith(prefix + "responses/") and path.count("/") == prefix.count("/") + 1:
                handler = {"GET": self.get_response, "DELETE": self.delete_response}
                return handler.get(method), True
            if path.startswith(prefix + "models/"):
                return (self.get_model if method == "GET" else None), True
        return None, False

    # ------------------------------------------------------------------ shared steps

    @property
    def kernel(self) -> Kernel:
        kernel = self.gateway.kernel
        assert kernel is not None, "the gateway's lifespan did not run"
        return kernel

    async def fail_anthropic(self, scope: Scope, send: Send, failure: Failure, rid: str) -> None:
        status, _ = messages.error_status(failure)
        headers = [
            _JSON,
            (b"x-request-id", rid.encode()),
            (b"request-id", rid.encode()),
            *failure.headers(),
        ]
        await _respond(scope, send, status, wire.dumps(messages.error_json(failure, rid)), headers)

    def metadata(self, scope: Scope, key: Key | None, *, anthropic: bool = False) -> dict[str, str]:
        """What the kernel's plugins learn of the caller: the key's metadata, the
        session (affinity) and, for Anthropic deployments, the Anthropic headers."""
        found = key.request_metadata() if key is not None else {}
        for name, value in scope["headers"]:
            if name == self.session_header and value:
                found[affinity.SESSION_KEY] = affinity.session_id(value.decode("latin-1"))
            elif anthropic and name in messages.PASSED_HEADERS:
                found[name.decode()] = value.decode("latin-1")[:1024]
        return found

    def provider_options(
        self, model: str, fields: Mapping[str, Any], wanted: Iterable[extras.Extra]
    ) -> dict[str, Any]:
        """Provider-only fields as options for ``model``'s deployments (or a
        :class:`~llmkernel_gateway.wire.BadRequest`); nothing to do without fields."""
        if not fields:
            return {}
        types = [c.provider_type for c in self.kernel.models.resolve(model)]
        return extras.options_for(fields, wanted, types, model)

    def request(
        self,
        model: str,
        history: Iterable[Any],
        kwargs: Mapping[str, Any],
        metadata: Mapping[str, str],
        options: Mapping[str, Any],
    ) -> ChatRequest:
        args = dict(kwargs)
        if options:
            args["options"] = options
        return self.kernel.build_request(model, list(history), metadata=metadata, **args)

    async def answer(self, request: ChatRequest) -> Response:
        timeout = self.gateway.settings.request_timeout
        async with asyncio.timeout(timeout + _SLACK):
            return await self.kernel.achat(request, timeout=timeout)

    async def chat_extras(
        self,
        call: wire.ChatCall,
        scope: Scope,
        send: Send,
        rid: str,
        route: str,
        key: Key | None,
        started: float,
    ) -> wire.ChatCall | None:
        """A Chat Completions call whose OpenAI-only fields (``modalities``, ``audio``,
        ``web_search_options``) became options for its deployments; or ``None``
        when one of them cannot take them (the 400 naming the field is answered)."""
        wanted = [extras.Extra.openai(name) for name in wire.OPENAI_ONLY]
        try:
            options = self.provider_options(call.model, call.extras, wanted)
        except Exception as exc:
            await self._refuse(
                exc, scope, send, rid, route, key, started, call.model, self.gateway._fail
            )
            return None
        return attrs.evolve(call, kwargs={**call.kwargs, **options}, extras={})

    # ------------------------------------------------------------------ /v1/responses

    async def create_response(
        self, scope: Scope, receive: Receive, send: Send, rid: str, started: float
    ) -> None:
        gw = self.gateway
        begun = await gw._begin(scope, receive, send, rid)
        if begun is None:
            return
        key, data = begun
        route = "responses_stream" if data.get("stream") is True else "responses"
        call = await gw._parse(responses.call, data, key, route, scope, send, rid, started)
        if call is None:
            return
        tenant = key.tenant if key is not None else ""
        history: tuple[Any, ...] = ()
        try:
            if call.previous_response_id is not None:
                assert self.store is not None
                record = await self.store.get(tenant, call.previous_response_id)
                if record is None:
                    raise _Missing(call.previous_response_id, "previous_response_id")
                history = record.conversation
            options = self.provider_options(call.model, call.extras, responses.EXTRAS)
            request = self.request(
                call.model,
                call.kernel_messages(history),
                call.kwargs,
                self.metadata(scope, key),
                options,
            )
        except Exception as exc:
            await self._refuse(exc, scope, send, rid, route, key, started, call.model, gw._fail)
            return
        response_id = "resp_" + secrets.token_hex(16)
        created = int(time.time())

        async def keep(body: Mapping[str, Any], answer: Response) -> None:
            if not call.store or self.store is None:
                return
            from llmkernel_gateway.store import StoredResponse

            conversation = (*history, *call.messages, answer.message)
            record = StoredResponse(
                id=response_id,
                tenant=tenant,
                created_at=float(created),
                expires_at=time.time() + gw.settings.responses_ttl,
                response=body,
                conversation=conversation,
            )
            try:
                await self.store.put(record)
            except Exception as exc:  # the answer still goes out; continuing it will 404
                log.error(
                    "gateway.responses.store_failed",
                    request_id=rid,
                    error=f"{type(exc).__name__}: {exc}",
                )

        if call.stream:
            from llmkernel.kernel import AsyncChatStream

            writer = responses.EventWriter(
                call, id=response_id, created_at=created, model=call.model
            )
            stream = AsyncChatStream(self.kernel, request, gw.settings.request_timeout)

            async def before_tail(answer: Response) -> None:
                if writer.final is not None:
                    await keep(writer.final, answer)

            await self.relay(
                scope,
                receive,
                send,
                rid,
                started,
                key,
                route,
                call.model,
                stream,
                writer,
                gw._fail,
                before_tail,
            )
            return
        try:
            answer = await self.answer(request)
        except Exception as exc:
            await self._refuse(exc, scope, send, rid, route, key, started, call.model, gw._fail)
            return
        served = f"{answer.provider}/{answer.model}"
        status, incomplete = responses.status_of(answer)
        body = responses.response_json(
            call,
            id=response_id,
            created_at=created,
            model=served,
            status=status,
            output=responses.output_items(answer, response_id.removeprefix("resp_"), call),
            usage=answer.usage,
            incomplete=incomplete,
        )
        await keep(body, answer)
        await _respond(
            scope, send, 200, wire.dumps(body), [_JSON, *_extension_headers(rid, answer)]
        )
        gw._done(rid, route, key, started, model=call.model, response=answer)

    async def _stored(self, scope: Scope, send: Send, rid: str) -> tuple[str, str] | None:
        """The caller's tenant and the id in the path, or the failure is answered."""
        key = self.gateway._authenticate(scope)
        if isinstance(key, Failure):
            await self.gateway._fail(scope, send, key, rid)
            return None
        response_id = scope["path"].rsplit("/", 1)[1]
        return (key.tenant if key is not None else ""), response_id

    async def get_response(
        self, scope: Scope, receive: Receive, send: Send, rid: str, started: float
    ) -> None:
        found = await self._stored(scope, send, rid)
        if found is None:
            return
        tenant, response_id = found
        assert self.store is not None
        record = await self.store.get(tenant, response_id)
        if record is None:
            await self.gateway._fail(scope, send, _Missing(response_id).failure, rid)
            return
        headers = [_JSON, (b"x-request-id", rid.encode())]
        await _respond(scope, send, 200, wire.dumps(record.response), headers)

    async def delete_response(
        self, scope: Scope, receive: Receive, send: Send, rid: str, started: float
    ) -> None:
        found = await self._stored(scope, send, rid)
        if found is None:
            return
        tenant, response_id = found
        assert self.store is not None
        if not await self.store.delete(tenant, response_id):
            await self.gateway._fail(scope, send, _Missing(response_id).failure, rid)
            return
        body = {"id": response_id, "object": "response.deleted", "deleted": True}
        await _respond(scope, send, 200, wire.dumps(body), [_JSON, (b"x-request-id", rid.encode())])

    # ------------------------------------------------------------------ /v1/messages

    async def create_message(
        self, scope: Scope, receive: Receive, send: Send, rid: str, started: float
    ) -> None:
        gw = self.gateway
        fail = self.fail_anthropic
        begun = await gw._begin(scope, receive, send, rid, fail=fail)
        if begun is None:
            return
        key, data = begun
        route = "messages_stream" if data.get("stream") is True else "messages"
        call = await gw._parse(
            messages.call, data, key, route, scope, send, rid, started, fail=fail
        )
        if call is None:
            return
        try:
            options = self.provider_options(call.model, call.extras, messages.EXTRAS)
            request = self.request(
                call.model,
                call.messages,
                call.kwargs,
                self.metadata(scope, key, anthropic=True),
                options,
            )
        except Exception as exc:
            await self._refuse(exc, scope, send, rid, route, key, started, call.model, fail)
            return
        message_id = "msg_" + secrets.token_hex(12)
        if call.stream:
            from llmkernel.kernel import AsyncChatStream

            writer = messages.EventWriter(id=message_id, model=call.model)
            stream = AsyncChatStream(self.kernel, request, gw.settings.request_timeout)
            await self.relay(
                scope,
                receive,
                send,
                rid,
                started,
                key,
                route,
                call.model,
                stream,
                writer,
                fail,
                ping=gw.settings.ping_interval,
            )
            return
        try:
            answer = await self.answer(request)
        except Exception as exc:
            await self._refuse(exc, scope, send, rid, route, key, started, call.model, fail)
            return
        body = messages.message_json(answer, id=message_id, model=call.model)
        headers = [_JSON, (b"request-id", rid.encode()), *_extension_headers(rid, answer)]
        await _respond(scope, send, 200, wire.dumps(body), headers)
        gw._done(rid, route, key, started, model=call.model, response=answer)

    async def count_tokens(
        self, scope: Scope, receive: Receive, send: Send, rid: str, started: float
    ) -> None:
        """``/v1/messages/count_tokens``: the provider's own count where it has one,
        else the kernel's (tiktoken for OpenAI models), and a header that says
        which: ``x-llmkernel-token-count: exact`` or ``estimate``."""
        gw = self.gateway
        fail = self.fail_anthropic
        begun = await gw._begin(scope, receive, send, rid, fail=fail)
        if begun is None:
            return
        key, data = begun
        route = "count_tokens"
        call = await gw._parse(
            lambda d: messages.call(d, count=True),
            data,
            key,
            route,
            scope,
            send,
            rid,
            started,
            fail=fail,
        )
        if call is None:
            return
        kernel = self.kernel
        try:
            request = self.request(
                call.model,
                call.messages,
                call.kwargs,
                self.metadata(scope, key, anthropic=True),
                {},
            )
            candidates = kernel.models.healthy_first(list(kernel.models.resolve(call.model)))
        except Exception as exc:
            await self._refuse(exc, scope, send, rid, route, key, started, call.model, fail)
            return
        # the deployment the conversation is on (affinity), else the first healthy one
        session = request.metadata.get(affinity.SESSION_KEY)
        pinned = (
            self.sessions.get((request.metadata.get("tenant", ""), call.model, session))
            if session
            else None
        )
        candidate = next((c for c in candidates if c.qualified == pinned), candidates[0])
        count = None
        try:
            async with asyncio.timeout(gw.settings.request_timeout):
                count = await kernel.provider(candidate.provider).count_tokens(
                    kernel.models.routed(request, candidate.model)
                )
        except Exception as exc:  # the local count, marked as an estimate
            log.warning(
                "gateway.count_tokens.provider_failed",
                request_id=rid,
                deployment=candidate.qualified,
                error=f"{type(exc).__name__}: {exc}",
            )
        if count is None:
            count = kernel.models.count(request, candidate)
        headers = [
            _JSON,
            (b"x-request-id", rid.encode()),
            (b"x-llmkernel-token-count", b"exact" if count.exact else b"estimate"),
            (b"x-llmkernel-token-method", count.method.encode("ascii", "replace")[:64]),
            (b"x-llmkernel-provider", candidate.provider.encode()),
            (b"x-llmkernel-model", candidate.model.encode()),
        ]
        await _respond(scope, send, 200, wire.dumps({"input_tokens": count.tokens}), headers)
        gw._done(rid, route, key, started, model=call.model, status=200)

    # ------------------------------------------------------------------ models

    def _anthropic_shape(self, scope: Scope) -> bool:
        return any(name == b"anthropic-version" for name, _ in scope["headers"])

    async def list_models(
        self, scope: Scope, receive: Receive, send: Send, rid: str, started: float
    ) -> None:
        """OpenAI's list, or Anthropic's (paged) when ``anthropic-version`` is sent."""
        if not self._anthropic_shape(scope):
            await self.gateway._models(scope, receive, send, rid, started)
            return
        key = self.gateway._authenticate(scope)
        if isinstance(key, Failure):
            await self.fail_anthropic(scope, send, key, rid)
            return
        from urllib.parse import parse_qs

        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        ids = [model for model, _ in self.gateway._model_ids(key)]
        try:
            limit = int((query.get("limit") or ["20"])[0])
        except ValueError:
            limit = 0
        if not 1 <= limit <= _MODELS_PAGE:
            failure = failures.bad_request(f"limit must be between 1 and {_MODELS_PAGE}", "limit")
            await self.fail_anthropic(scope, send, failure, rid)
            return
        after, before = (query.get("after_id") or [None])[0], (query.get("before_id") or [None])[0]
        if after in ids:
            ids = ids[ids.index(after) + 1 :]
        elif before in ids:
            ids = ids[max(0, ids.index(before) - limit) : ids.index(before)]
        page = ids[:limit]
        body = {
            "data": [_anthropic_model(m) for m in page],
            "has_more": len(ids) > len(page),
            "first_id": page[0] if page else None,
            "last_id": page[-1] if page else None,
        }
        await _respond(scope, send, 200, wire.dumps(body), [_JSON, (b"x-request-id", rid.encode())])

    async def get_model(
        self, scope: Scope, receive: Receive, send: Send, rid: str, started: float
    ) -> None:
        anthropic = self._anthropic_shape(scope)
        fail = self.fail_anthropic if anthropic else self.gateway._fail
        key = self.gateway._authenticate(scope)
        if isinstance(key, Failure):
            await fail(scope, send, key, rid)
            return
        wanted = scope["path"].split("/models/", 1)[1]
        owners = dict(self.gateway._model_ids(key))
        if wanted not in owners:
            await fail(scope, send, failures.not_found(f"model {wanted!r} is not known here"), rid)
            return
        body = (
            _anthropic_model(wanted)
            if anthropic
            else {"id": wanted, "object": "model", "created": 0, "owned_by": owners[wanted]}
        )
        await _respond(scope, send, 200, wire.dumps(body), [_JSON, (b"x-request-id", rid.encode())])

    # ------------------------------------------------------------------ streams

    async def _refuse(
        self,
        exc: Exception,
        scope: Scope,
        send: Send,
        rid: str,
        route: str,
        key: Key | None,
        started: float,
        model: str,
        fail: Fail,
    ) -> None:
        gw = self.gateway
        if isinstance(exc, wire.BadRequest):
            failure = failures.bad_request(exc.message, exc.param)
        elif isinstance(exc, _Missing):
            failure = exc.failure
        else:
            failure = gw._failure(exc, rid, model)
        gw._done(rid, route, key, started, failure=failure, model=model)
        await fail(scope, send, failure, rid)

    async def relay(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        rid: str,
        started: float,
        key: Key | None,
        route: str,
        model: str,
        stream: Any,
        writer: Any,
        fail: Fail,
        before_tail: Callable[[Response], Awaitable[None]] | None = None,
        ping: float | None = None,
    ) -> None:
        """Answer a kernel stream through ``writer`` (an API's event writer)."""
        gw = self.gateway
        deadline = asyncio.get_running_loop().time() + gw.settings.request_timeout + _SLACK
        try:
            async with asyncio.timeout_at(deadline):
                first = await anext(stream)
        except BaseException as exc:
            await _close(stream)
            if not isinstance(exc, Exception):
                raise
            await self._refuse(exc, scope, send, rid, route, key, started, model, fail)
            return
        ttft = time.perf_counter() - started
        pump = asyncio.ensure_future(
            self._pump(send, stream, first, writer, rid, deadline, model, before_tail, ping)
        )
        watch = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((pump, watch), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the server gave up on us (shutdown timeout)
            pump.cancel()
            watch.cancel()
            await _close(stream)
            raise
        if not pump.done():  # the client went away: stop the upstream request now
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
            await _close(stream)
            failure = Failure(
                status=499, message="client disconnected", type="cancelled", kind="cancelled"
            )
            gw._done(rid, route, key, started, failure=failure, model=model)
            return
        watch.cancel()
        error = pump.result()
        response = stream.response
        if error is not None or response is None:
            gw._done(
                rid,
                route,
                key,
                started,
                failure=error or failures.internal(rid),
                model=model,
                status=200,
            )
            return
        gw._done(rid, route, key, started, model=model, response=response, ttft=ttft)

    async def _pump(
        self,
        send: Send,
        stream: Any,
        first: Any,
        writer: Any,
        rid: str,
        deadline: float,
        model: str,
        before_tail: Callable[[Response], Awaitable[None]] | None,
        ping: float | None,
    ) -> Failure | None:
        """Send the stream; return the failure that cut it, if any."""
        headers = [*_SSE_HEADERS, (b"x-request-id", rid.encode())]
        attempts = getattr(getattr(stream, "context", None), "attempts", None)
        if attempts:  # the candidate streaming now
            candidate = attempts[-1].candidate
            headers += [
                (b"x-llmkernel-provider", candidate.provider.encode()),
                (b"x-llmkernel-model", candidate.model.encode()),
                (b"x-llmkernel-attempts", str(len(attempts)).encode()),
            ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        failure: Failure | None = None
        pending: asyncio.Future[Any] | None = None
        try:
            async with asyncio.timeout_at(deadline):
                text = writer.start() + writer.event(first)
                await send({"type": "http.response.body", "body": text.encode(), "more_body": True})
                while True:
                    if ping is None:
                        event = await _next(stream)
                    else:
                        pending = pending or asyncio.ensure_future(_next(stream))
                        done, _ = await asyncio.wait((pending,), timeout=ping)
                        if not done:
                            body = writer.ping().encode()
                            await send(
                                {"type": "http.response.body", "body": body, "more_body": True}
                            )
                            continue
                        event, pending = pending.result(), None
                    if event is _END:
                        break
                    if event.type == "error":
                        continue  # the kernel raises it next
                    text = writer.event(event)
                    if text:
                        await send(
                            {"type": "http.response.body", "body": text.encode(), "more_body": True}
                        )
            response = stream.response
            tail = writer.finish(response)
            if before_tail is not None:
                await before_tail(response)
        except Exception as exc:
            failure = self.gateway._failure(exc, rid, model)
            tail = writer.fail(failure)
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
            await _close(stream)
        await send({"type": "http.response.body", "body": tail.encode(), "more_body": False})
        return failure


class _Missing(Exception):
    """A stored response the caller cannot have: missing, expired, deleted or
    another tenant's (all the same 404)."""

    def __init__(self, response_id: str, param: str | None = None) -> None:
        super().__init__(response_id)
        self.failure = failures.not_found(
            f"Response with id {response_id!r} not found.", code="not_found", param=param
        )


def _anthropic_model(model: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model,
        "display_name": model,
        "created_at": "1970-01-01T00:00:00Z",
    }


async def _next(stream: Any) -> Any:
    try:
        return await anext(stream)
    except StopAsyncIteration:
        return _END


from llmkernel_gateway.app import (  # noqa: E402  (app imports this module lazily)
    _close,
    _disconnected,
    _extension_headers,
    _respond,
)

__all__ = ["Apis"]
