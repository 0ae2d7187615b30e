"""Ollama wire payloads for the tests, shaped after Ollama's API reference
(docs/api.md: /api/chat, /api/embed, /api/tags, /api/show) and its streaming
tool-call announcement: NDJSON chat objects, the last with ``"done": true``."""

from __future__ import annotations

import re
import threading
from typing import Any

from llmkernel_http.testing.fake_server import FakeServer

CREATED = "2025-05-27T22:54:57.641643Z"
#: a 1x1 PNG, base64
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5E"
    "rkJggg=="
)


def chunk(
    model: str,
    *,
    content: str = "",
    thinking: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking is not None:
        message["thinking"] = thinking
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return {"model": model, "created_at": CREATED, "message": message, "done": False}


def final(
    model: str,
    *,
    prompt: int | None = 26,
    output: int = 298,
    done_reason: str = "stop",
    content: str = "",
    thinking: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The last object of a stream, or a whole non-streamed answer."""
    data = chunk(model, content=content, thinking=thinking, tool_calls=tool_calls)
    data.update(
        {
            "done": True,
            "done_reason": done_reason,
            "total_duration": 4883583458,
            "load_duration": 1334875,
            "prompt_eval_duration": 342546000,
            "eval_count": output,
            "eval_duration": 4535599000,
        }
    )
    if prompt is not None:
        data["prompt_eval_count"] = prompt
    return data


def call(
    name: str, arguments: dict[str, Any], *, index: int | None = None, call_id: str | None = None
) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name, "arguments": arguments}
    if index is not None:
        function["index"] = index
    out: dict[str, Any] = {"function": function}
    if call_id is not None:
        out["id"] = call_id
    return out


def pieces(text: str) -> list[str]:
    """``"Hello there, friend!"`` -> ``["Hello ", "there, ", "friend!"]``."""
    return re.findall(r"\S+\s*", text) or [text]


def tags(ids: list[str]) -> dict[str, Any]:
    return {
        "models": [
            {
                "name": model_id,
                "model": model_id,
                "modified_at": "2025-03-31T16:07:27.293556892-07:00",
                "size": 3338801804,
                "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": "llama",
                    "families": ["llama"],
                    "parameter_size": "3.2B",
                    "quantization_level": "Q4_K_M",
                },
            }
            for model_id in ids
        ]
    }


def close_later(server: FakeServer) -> None:
    """Close in the background: ``FakeServer.close`` blocks up to 0.5 s (its
    ``serve_forever`` poll interval)."""
    threading.Thread(target=server.close, daemon=True).start()
