"""Sending a request and reading its answer, the same way for every HTTP provider.

A provider builds its request, parses its own error bodies and words its own
errors; these functions do the part that is the same everywhere:

* :func:`send` sends, maps a transport failure with :func:`error_for_transport`,
  and turns an error status into the provider's error (built by ``error_for`` from
  the response and its whole body);
* :func:`read_json` reads a success body whole, closes the response and decodes
  the JSON, or raises :class:`~llmkernel.errors.MalformedResponseError`.

Both read a body within ``max_bytes`` (default
:data:`~llmkernel_http.body.MAX_RESPONSE_BYTES`) before and after decoding, past
which the answer is a ``MalformedResponseError``. Neither applies a timeout: a
provider wraps them in its own ``asyncio.timeout``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from llmkernel import errors
from llmkernel_http.body import MAX_RESPONSE_BYTES, UnreadableBody, decode, too_large
from llmkernel_http.errors import error_for_transport, request_id_from

__all__ = ["read_json", "read_raw", "send"]

#: Builds the provider's error for an error ``response`` from its whole body, decoded
#: (the response itself is closed, its body not read into it: use ``body``).
ErrorFor = Callable[[httpx.Response, bytes], errors.ProviderError]
#: Builds the error for a body that is not JSON, given the start of the body.
MalformedFor = Callable[[str], errors.MalformedResponseError]

_SNIPPET = 200


async def send(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    provider: str,
    model: str,
    error_for: ErrorFor,
    max_bytes: int = MAX_RESPONSE_BYTES,
) -> httpx.Response:
    """Send ``request`` and return the open (streaming) response when its status is
    2xx; the caller reads and closes it.

    A transport failure (refused, reset, timed out) raises the error of
    :func:`error_for_transport`, chained from the httpx exception. Any other status
    (3xx included: redirects are not followed) reads the body, closes the response
    and raises ``error_for(response, body)``; a transport failure while reading that
    body raises the transport error instead.
    """
    try:
        response = await client.send(request, stream=True)
    except httpx.RequestError as exc:
        raise error_for_transport(exc, provider=provider, model=model) from exc
    if response.is_success:
        return response
    body = await _read(response, provider=provider, model=model, limit=max_bytes)
    raise error_for(response, body)


async def read_json(
    response: httpx.Response,
    *,
    provider: str,
    model: str,
    malformed: MalformedFor | None = None,
    max_bytes: int = MAX_RESPONSE_BYTES,
) -> Any:
    """Read ``response``'s whole body, close it, and return the decoded JSON.

    A transport failure while reading raises the error of
    :func:`error_for_transport`. A body that is not JSON raises
    :class:`~llmkernel.errors.MalformedResponseError` with the start of the body
    (whitespace collapsed, at most 200 characters), the status and the request id;
    ``malformed`` builds that error instead, for a provider that words its own.
    """
    body = await _read(response, provider=provider, model=model, limit=max_bytes)
    try:
        return json.loads(body)
    except ValueError:  # not JSON, or not UTF-8/16/32
        pass  # raised outside the handler: nothing of the body chained to the error
    snippet = " ".join(body.decode("utf-8", "replace").split())[:_SNIPPET]
    if malformed is not None:
        raise malformed(snippet)
    raise errors.MalformedResponseError(
        f"{provider} answered HTTP {response.status_code} with a body that is not JSON: "
        f"{snippet!r}",
        provider=provider,
        model=model,
        status=response.status_code,
        request_id=request_id_from(response.headers),
    )


async def read_raw(response: httpx.Response, limit: int) -> bytes:
    """``response``'s body as sent (still encoded), refused past ``limit`` bytes (a
    ``Content-Length`` over it before anything is read) with
    :class:`~llmkernel_http.body.UnreadableBody`."""
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large("the answer's Content-Length", length, limit)
    parts: list[bytes] = []
    size = 0
    async for part in response.aiter_raw():
        size += len(part)
        if size > limit:
            raise too_large("the answer's body", f"more than {limit}", limit)
        parts.append(part)
    return b"".join(parts)


async def _read(response: httpx.Response, *, provider: str, model: str, limit: int) -> bytes:
    """The whole body, decoded, within ``limit``; the response is closed whatever
    happens."""
    try:
        raw = await read_raw(response, limit)
        return decode(raw, response.headers.get("content-encoding", ""), limit)
    except httpx.RequestError as exc:
        raise error_for_transport(exc, provider=provider, model=model) from exc
    except UnreadableBody as exc:
        refused = str(exc)
    finally:
        await response.aclose()
    raise errors.MalformedResponseError(
        f"{provider} answered HTTP {response.status_code}: {refused}",
        provider=provider,
        model=model,
        status=response.status_code,
        request_id=request_id_from(response.headers),
    )
