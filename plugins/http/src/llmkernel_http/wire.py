"""Small readers every HTTP provider needs, written once: token counts, tool-call
arguments, ``data:`` URLs, body snippets for error messages, and capabilities looked
up by model-name prefix."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = [
    "capabilities_by_prefix",
    "parse_arguments",
    "plain",
    "snippet",
    "split_data_url",
    "token_count",
]

T = TypeVar("T")

#: The most characters of a body quoted in an error message.
SNIPPET = 200


def snippet(text: str | bytes, limit: int = SNIPPET) -> str:
    """The start of a body for an error message: whitespace collapsed, at most
    ``limit`` characters."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return " ".join(text.split())[:limit]


def token_count(value: Any) -> int:
    """A token count from a provider's usage object: a non-negative integer (an
    integral float such as ``12.0`` too); anything else (absent, ``null``, a
    string, a negative number, a boolean) counts as 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(0, value)
    if isinstance(value, float) and value.is_integer():
        return max(0, int(value))
    return 0


def parse_arguments(raw: Any, *, name: str = "") -> dict[str, Any]:
    """Tool-call arguments as a dict: an object as is, a JSON string decoded, an
    empty string or ``None`` as ``{}``. Raises :class:`ValueError` naming the tool
    when they are not a JSON object (the provider words it as a malformed answer)."""
    if isinstance(raw, Mapping):
        return dict(raw)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if not isinstance(raw, str):
        raise ValueError(f"tool call {name!r} arguments are {type(raw).__name__}, not a string")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"tool call {name!r} arguments are not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"tool call {name!r} arguments are not a JSON object")
    return value


def split_data_url(url: str) -> tuple[str, str] | None:
    """``(media type, base64 data)`` of a ``data:<type>;base64,<data>`` URL; ``None``
    for any other URL. Raises :class:`ValueError` for a ``data:`` URL that is not
    base64 or lacks its type or data."""
    if not url.startswith("data:"):
        return None
    header, _, data = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if encoding.lower() != "base64" or not media_type or not data:
        raise ValueError("a data URL must be data:<type>;base64,<data>")
    return media_type, data


def capabilities_by_prefix(table: Mapping[str, T], model: str) -> T | None:
    """The entry for ``model`` in ``table``: its exact name, else the longest known
    name it extends with ``-`` or ``:`` (dated snapshots such as
    ``gpt-4o-2024-08-06``, tags such as ``llama3.2:3b``)."""
    found = table.get(model)
    if found is not None:
        return found
    best: str | None = None
    for known in table:
        if (
            len(model) > len(known)
            and model.startswith(known)
            and model[len(known)] in "-:"
            and (best is None or len(known) > len(best))
        ):
            best = known
    return table[best] if best is not None else None


def plain(value: Any) -> Any:
    """Mappings and sequences as plain dicts and lists, ready for ``json.dumps``
    (request bodies built from the kernel's frozen mappings and tuples)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
