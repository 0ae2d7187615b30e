"""An incremental newline-delimited JSON decoder (Ollama's streaming format)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from llmkernel_http.body import MAX_EVENT_SIZE, UnreadableBody


async def aiter_ndjson(
    chunks: AsyncIterator[str], *, max_line_size: int = MAX_EVENT_SIZE
) -> AsyncIterator[Any]:
    """Yield each JSON value as soon as its line is complete.

    A line that is not JSON raises :class:`ValueError` naming the line; a last line
    without its newline is still decoded; a line longer than ``max_line_size``
    characters raises :class:`~llmkernel_http.body.UnreadableBody`.
    """
    buffer = ""
    async for chunk in chunks:
        buffer += chunk
        while "\n" in buffer:
            line, buffer = buffer.split("\n", 1)
            if line.strip():
                yield _decode(line)
        if len(buffer) > max_line_size:
            raise UnreadableBody(f"a stream line is over {max_line_size} characters")
    if buffer.strip():
        yield _decode(buffer)


def _decode(line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not a JSON line: {line[:200]!r}") from exc
