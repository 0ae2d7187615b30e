"""Server spans for an ASGI app (the gateway): one SERVER span per request that
continues the caller's W3C ``traceparent`` (through the configured propagators,
``opentelemetry.propagate``), current while the request is handled, so the
kernel's spans nest under it.

Attributes by the HTTP conventions (stable): ``http.request.method``,
``url.path``, ``url.scheme``, ``http.route``, ``server.address``, ``server.port``,
``network.protocol.version``, ``client.address``, ``http.response.status_code``
and ``error.type`` (the status, for 5xx). No header, query or body is recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from contextvars import ContextVar
from typing import Any

import attrs

__all__ = ["ServerSpans"]

#: the known methods of the HTTP conventions; anything else is ``_OTHER``
_METHODS = frozenset(
    ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE")
)


class _HeaderGetter:
    """``opentelemetry.propagators.textmap.Getter`` over ASGI headers."""

    def get(self, carrier: Iterable[tuple[bytes, bytes]], key: str) -> list[str] | None:
        wanted = key.lower().encode("latin-1")
        found = [value.decode("latin-1") for name, value in carrier if name == wanted]
        return found or None

    def keys(self, carrier: Iterable[tuple[bytes, bytes]]) -> list[str]:
        return [name.decode("latin-1") for name, _ in carrier]


@attrs.define(kw_only=True, eq=False)
class _Handle:
    span: Any
    token: Any  # opentelemetry.context's token
    status: int | None = None


_current: ContextVar[_Handle | None] = ContextVar("llmkernel_otel_server_span", default=None)


class ServerSpans:
    """Makes the server spans; ``routes`` are the paths to trace (others, such as
    health checks and scrapes, are not)."""

    def __init__(self, routes: Iterable[str], *, tracer_provider: Any = None) -> None:
        from opentelemetry import trace

        from llmkernel_otel.semconv import package_version

        provider = tracer_provider or trace.get_tracer_provider()
        self.tracer = provider.get_tracer("llmkernel.gateway", package_version())
        self.routes = frozenset(routes)
        self._getter = _HeaderGetter()

    def start(self, scope: MutableMapping[str, Any]) -> _Handle | None:
        """Start the request's span and make it current (``None``: not traced)."""
        path = scope.get("path", "")
        if path not in self.routes:
            return None
        from opentelemetry import context, propagate, trace

        parent = propagate.extract(scope.get("headers") or [], getter=self._getter)  # type: ignore[arg-type]
        method = str(scope.get("method", ""))
        known = method if method in _METHODS else "_OTHER"
        attributes: dict[str, Any] = {
            "http.request.method": known,
            "url.path": path,
            "url.scheme": scope.get("scheme", "http"),
            "http.route": path,
        }
        version = scope.get("http_version")
        if version:
            attributes["network.protocol.version"] = version
        server = scope.get("server")
        if server and server[0]:
            attributes["server.address"] = server[0]
            if server[1]:
                attributes["server.port"] = int(server[1])
        client = scope.get("client")
        if client and client[0]:
            attributes["client.address"] = client[0]
        span = self.tracer.start_span(
            f"{known} {path}", context=parent, kind=trace.SpanKind.SERVER, attributes=attributes
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        handle = _Handle(span=span, token=token)
        _current.set(handle)
        return handle

    @staticmethod
    def answered(status: int, **attributes: Any) -> None:
        """The status the current request answered (and attributes of the gateway's:
        ``llmkernel.request.id``, ``llmkernel.key``)."""
        handle = _current.get()
        if handle is None:
            return
        handle.status = status
        handle.span.set_attributes({k: v for k, v in attributes.items() if v is not None})

    def end(self, handle: _Handle) -> None:
        from opentelemetry import context
        from opentelemetry.trace import Status, StatusCode

        span = handle.span
        status = handle.status
        if status is not None:
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_attribute("error.type", str(status))
                span.set_status(Status(StatusCode.ERROR))
        context.detach(handle.token)
        _current.set(None)
        span.end()
