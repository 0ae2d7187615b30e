"""An incremental newline-delimited JSON decoder (Ollama's streaming format)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any


async def aiter_ndjson(chunks: AsyncIterator[str]) -> AsyncIterator[Any]:
    """Yield each JSON value as soon as its line is complete.

    A line that is not JSON raises :class:`ValueError` naming the line; a last line
    without its newline is still decoded.
    """
    buffer = ""
    async for chunk in chunks:
        buffer += chunk
        while "\n" in buffer:
            line, buffer = buffer.split("\n", 1)
            if line.strip():
                yield _decode(line)
    if buffer.strip():
        yield _decode(buffer)


def _decode(line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not a JSON line: {line[:200]!r}") from exc
