"""Bounds on what an answer can make the kernel hold: its body, what its
``Content-Encoding`` decodes to, and one event of a stream.

An upstream controls the size of its answers; a gzip bomb (1 MB that inflates to
gigabytes) or an absurd ``Content-Length`` must end in a clear error, not in memory
growth. :class:`~llmkernel_http.HTTPProvider` applies ``max_response_bytes`` (its
settings) to every answer it reads whole, before and after decoding, and the stream
decoders (:mod:`llmkernel_http.sse`, :mod:`llmkernel_http.ndjson`) bound one event or
line by :data:`MAX_EVENT_SIZE`. Past a bound, :class:`UnreadableBody` is raised, which
the provider reports as :class:`~llmkernel.errors.MalformedResponseError`.

:func:`decode` decodes an answer read whole with :mod:`zlib`, in bounded steps (the
kernel asks for ``gzip`` and ``deflate`` only, :data:`ACCEPT_ENCODING`: the codings
it can bound); streams are decoded by httpx chunk by chunk, each chunk bounded by
what it can expand to, and their events by :data:`MAX_EVENT_SIZE`.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

__all__ = [
    "ACCEPT_ENCODING",
    "MAX_EVENT_SIZE",
    "MAX_RESPONSE_BYTES",
    "UnreadableBody",
    "decode",
]

#: The default of ``max_response_bytes``: an answer's body, encoded and decoded.
MAX_RESPONSE_BYTES = 64 * 2**20
#: The longest event (or line) a stream decoder holds, in characters.
MAX_EVENT_SIZE = 16 * 2**20
#: The content codings the kernel asks for (``Accept-Encoding``).
ACCEPT_ENCODING = "gzip, deflate"

#: deflate's largest expansion: a body this many times smaller than the bound cannot
#: exceed it, so it needs no trial decoding
_DEFLATE_RATIO = 1032
_STEP = 2**20  # decoded bytes at a time
_ZLIB = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}


class UnreadableBody(Exception):
    """An answer the kernel will not read: over a size bound, or in a content coding
    it did not ask for or cannot decode. The message names the bound."""


def too_large(what: str, size: int | str, limit: int) -> UnreadableBody:
    return UnreadableBody(
        f"{what} is over max_response_bytes = {limit} ({size} bytes); "
        "raise max_response_bytes in the provider's table if such answers are expected"
    )


def decode(body: bytes, content_encoding: str, limit: int) -> bytes:
    """``body`` decoded by ``content_encoding`` (the header's value: codings in the
    order applied; ``gzip``, ``deflate`` and ``identity``), with :mod:`zlib`, as
    httpx's decoders do. Raises :class:`UnreadableBody` for another coding, a body
    that does not decode, or one that would be over ``limit`` bytes decoded: a body
    that could be (deflate expands at most 1032 times) is first counted a megabyte
    at a time, keeping none of it, so a bomb never grows memory."""
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    for coding in codings:
        if coding not in _ZLIB:
            raise UnreadableBody(
                f"the answer's content coding {coding!r} is not one the kernel asked for "
                f"(Accept-Encoding: {ACCEPT_ENCODING})"
            )
    for index, coding in enumerate(reversed(codings)):
        if index == len(codings) - 1 and len(body) * _DEFLATE_RATIO > limit:
            for _ in _inflating(body, coding, limit):  # the last one counted first
                pass
        body = b"".join(_inflating(body, coding, limit))
    return body


def _inflating(body: bytes, coding: str, limit: int) -> Iterator[bytes]:
    """``body`` decoded, in parts of at most :data:`_STEP` bytes, past ``limit``
    bytes: :class:`UnreadableBody`."""
    for wbits in (_ZLIB[coding], -zlib.MAX_WBITS):  # a raw deflate stream, for "deflate"
        decompressor = zlib.decompressobj(wbits)
        data, size = body, 0
        try:
            while True:
                part = decompressor.decompress(data, _STEP)
                size += len(part)
                if size > limit:
                    raise too_large("the answer's decoded body", f"more than {limit}", limit)
                yield part
                data = decompressor.unconsumed_tail
                if not data and len(part) < _STEP:
                    return
        except zlib.error:
            if coding != "deflate" or wbits < 0 or size:
                raise UnreadableBody(f"the answer's {coding} body does not decode") from None
