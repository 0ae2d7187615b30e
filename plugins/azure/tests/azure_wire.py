"""Azure OpenAI's wire format for the fake server, from Azure OpenAI's REST reference
and its content filtering page: OpenAI's chat completion and chunk objects plus
``prompt_filter_results`` / ``content_filter_results``, and Azure's error bodies."""

from __future__ import annotations

import json
from typing import Any

from llmkernel_http.testing.fake_server import FakeResponse, Gate, Piece

REQUEST_ID = "c0ffee00-1234-4abc-8def-0123456789ab"
HEADERS = {
    "apim-request-id": REQUEST_ID,
    "x-request-id": REQUEST_ID,
    "x-ms-region": "Sweden Central",
}
SAFE = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}
PROMPT_FILTER = [
    {
        "prompt_index": 0,
        "content_filter_results": {**SAFE, "jailbreak": {"filtered": False, "detected": False}},
    }
]


def completion(
    message: dict[str, Any],
    *,
    finish: str = "stop",
    usage: dict[str, Any] | None = None,
    filters: dict[str, Any] | None = None,
    model: str = "gpt-4o-mini-2024-07-18",
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-AzureA1b2C3",
        "object": "chat.completion",
        "created": 1764540000,
        "model": model,
        "prompt_filter_results": PROMPT_FILTER,
        "choices": [
            {
                "index": 0,
                "finish_reason": finish,
                "logprobs": None,
                "message": {"role": "assistant", "refusal": None, **message},
                "content_filter_results": filters if filters is not None else SAFE,
            }
        ],
        "usage": usage or {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
        "system_fingerprint": "fp_ee1d74bde0",
    }


def chunk(
    delta: dict[str, Any] | None = None,
    *,
    finish: str | None = None,
    filters: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "chatcmpl-AzureA1b2C3",
        "object": "chat.completion.chunk",
        "created": 1764540000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_ee1d74bde0",
        "choices": [],
    }
    if delta is not None or finish is not None:
        data["choices"] = [
            {
                "index": 0,
                "delta": delta or {},
                "finish_reason": finish,
                "logprobs": None,
                "content_filter_results": filters if filters is not None else SAFE,
            }
        ]
    if usage is not None:
        data["usage"] = usage
    return data


def prompt_filter_chunk() -> dict[str, Any]:
    """Azure's first chunk: no choices, the prompt's filter results."""
    return {
        "id": "",
        "object": "",
        "created": 0,
        "model": "",
        "choices": [],
        "prompt_filter_results": PROMPT_FILTER,
    }


def sse(objects: list[dict[str, Any] | Gate], *, done: bool = True, **kw: Any) -> FakeResponse:
    pieces: list[Piece] = [
        o if isinstance(o, Gate) else f"data: {json.dumps(o)}\n\n" for o in objects
    ]
    if done:
        pieces.append("data: [DONE]\n\n")
    return FakeResponse.sse(pieces, headers=HEADERS, **kw)


def error(status: int, body: dict[str, Any], **headers: str) -> FakeResponse:
    return FakeResponse.json_body(body, status=status, headers={**HEADERS, **headers})


def content_filter_error() -> dict[str, Any]:
    return {
        "error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's "
            "content management policy. Please modify your prompt and retry.",
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": {
                    "hate": {"filtered": True, "severity": "high"},
                    "jailbreak": {"filtered": True, "detected": True},
                    "self_harm": {"filtered": False, "severity": "safe"},
                    "sexual": {"filtered": False, "severity": "safe"},
                    "violence": {"filtered": False, "severity": "low"},
                },
            },
        }
    }
