"""Headers a plugin adds to the requests one provider instance sends from the
current context: how a tracing plugin passes the W3C ``traceparent`` of an attempt
to an upstream that continues the trace.

A gate's ``acquire`` runs in the task that then calls the provider, so it can set
them there; its ``release`` closes them::

    from llmkernel_http.outgoing import add_headers

    extra = add_headers("vllm", {"traceparent": "00-...-01"})   # in acquire
    ...
    extra.close()                                                # in release

:class:`~llmkernel_http.provider.HTTPProvider` sends them on every request of that
instance (``send`` and ``send_json``), under the client's and
``request_headers``' own. A closed set is never sent again, even from a context
that copied it (a task started meanwhile).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar

import attrs

__all__ = ["Outgoing", "add_headers", "headers_for"]


@attrs.define(kw_only=True, eq=False)
class Outgoing:
    """Headers for the requests of ``provider`` while open."""

    provider: str
    headers: Mapping[str, str]
    open: bool = True

    def close(self) -> None:
        self.open = False


_current: ContextVar[Outgoing | None] = ContextVar("llmkernel_http_outgoing", default=None)


def add_headers(provider: str, headers: Mapping[str, str]) -> Outgoing:
    """Send ``headers`` on the requests ``provider`` makes from this context (and
    the tasks it starts) until :meth:`Outgoing.close`. Values must be valid header
    values (no CR, LF or NUL): they are checked here."""
    for name, value in headers.items():
        if any(c in f"{name}{value}" for c in "\r\n\0"):
            raise ValueError(f"header {name!r} has a CR, LF or NUL in it")
    outgoing = Outgoing(provider=provider, headers=dict(headers))
    _current.set(outgoing)
    return outgoing


def headers_for(provider: str) -> Mapping[str, str] | None:
    """The open headers for ``provider`` in this context, or ``None``."""
    outgoing = _current.get()
    if outgoing is None or not outgoing.open or outgoing.provider != provider:
        return None
    return outgoing.headers
