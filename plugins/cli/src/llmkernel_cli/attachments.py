"""``-a PATH_OR_URL``: images and PDFs sent with a prompt.

The type is read from the content (its magic bytes), not the name: a ``.png`` that
holds a JPEG is sent as a JPEG, a text file named ``.pdf`` is refused. A URL is
downloaded (at most :data:`MAX_BYTES`) and sent inline, so every provider gets the
same bytes. Before anything is sent, the model's capabilities are checked
(``kernel.models.capabilities``): images need ``images``, PDFs ``documents``.
"""

from __future__ import annotations

import base64
import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel
    from llmkernel.types import FilePart, ImagePart

__all__ = ["MAX_BYTES", "TYPES", "Attachment", "check_model", "load", "sniff"]

#: the largest attachment read (Anthropic's whole request limit is 32 MB)
MAX_BYTES = 32 * 1024 * 1024
#: the types sent, and what a model needs to take each
TYPES = {
    "image/png": "images",
    "image/jpeg": "images",
    "image/gif": "images",
    "image/webp": "images",
    "application/pdf": "documents",
}


def sniff(content: bytes) -> str | None:
    """The media type of ``content`` by its first bytes, if it is one of :data:`TYPES`."""
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    if content[:1024].lstrip(b"\r\n\t ").startswith(b"%PDF-"):
        return "application/pdf"
    return None


@attrs.frozen(kw_only=True)
class Attachment:
    """One file to send: its bytes, their media type and where they came from."""

    media_type: str
    content: bytes = attrs.field(repr=False)
    source: str | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def need(self) -> str:
        """The capability a model needs to take it (``images``, ``documents``)."""
        return TYPES[self.media_type]

    def part(self) -> ImagePart | FilePart:
        from llmkernel.types import FilePart, ImagePart

        data = base64.b64encode(self.content).decode("ascii")
        if self.need == "images":
            return ImagePart(data=data, media_type=self.media_type)
        name = Path(self.source or "document.pdf").name if self.source != "-" else None
        return FilePart(data=data, media_type=self.media_type, filename=name)


def load(spec: str, media_type: str | None = None) -> Attachment:
    """The attachment named by ``spec``: a path, an http(s) URL or ``-`` (stdin);
    ``media_type`` (``--at``) names a type the content cannot show. ``UsageError``
    naming the attachment when it cannot be read or is not an image or PDF."""
    from llmkernel_cli.shell import UsageError

    if spec.startswith(("http://", "https://")):
        content = _download(spec)
    elif spec == "-":
        content = sys.stdin.buffer.read(MAX_BYTES + 1)
    else:
        try:
            with Path(spec).open("rb") as handle:
                content = handle.read(MAX_BYTES + 1)
        except OSError as exc:
            raise UsageError(f"attachment {spec!r}: {exc.strerror or exc}") from None
    if len(content) > MAX_BYTES:
        raise UsageError(f"attachment {spec!r} is larger than {MAX_BYTES // 2**20} MiB")
    found = sniff(content)
    if media_type is not None and media_type not in TYPES:
        raise UsageError(
            f"attachment type {media_type!r} is not one sent; known: {', '.join(TYPES)}"
        )
    if found is None and media_type is None:
        raise UsageError(
            f"attachment {spec!r} is not an image (PNG, JPEG, GIF, WebP) or a PDF by its "
            "content; name its type with --at PATH TYPE if it is one"
        )
    if found is not None and media_type is not None and found != media_type:
        raise UsageError(f"attachment {spec!r} is {found} by its content, not {media_type}")
    return Attachment(media_type=found or str(media_type), content=content, source=spec)


def _download(url: str) -> bytes:
    import httpx

    from llmkernel_cli.shell import UsageError

    try:
        with (
            httpx.Client(follow_redirects=True, timeout=30.0) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code >= 400:
                raise UsageError(f"attachment {url!r}: HTTP {response.status_code}")
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_BYTES:
                    break
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise UsageError(f"attachment {url!r}: {type(exc).__name__}: {exc}") from None


def check_model(kernel: Kernel, model: str, attachments: Sequence[Attachment]) -> None:
    """Refuse, before sending, a model none of whose candidates can take every
    attachment (a candidate whose capabilities are unknown may)."""
    from llmkernel_cli.shell import UsageError

    needs = sorted({a.need for a in attachments})
    if not needs:
        return
    candidates = kernel.models.resolve(model)
    refused = []
    for candidate in candidates:
        caps = kernel.models.capabilities(candidate)
        missing = [n for n in needs if caps is not None and not getattr(caps, n)]
        if not missing:
            return
        refused.append(f"{candidate.qualified} takes no {' or '.join(missing)}")
    what = {"images": "images", "documents": "PDF documents"}
    raise UsageError(
        f"model {model!r} cannot take the attachments ({', '.join(what[n] for n in needs)}): "
        f"{'; '.join(refused)}"
    )
