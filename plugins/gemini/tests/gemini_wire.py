"""Gemini wire payloads for the fake server, written from the public API reference
(ai.google.dev/api): ``GenerateContentResponse``, ``UsageMetadata``, the SSE framing
of ``streamGenerateContent?alt=sse`` (``data: {...}\\r\\n\\r\\n``, no end marker) and
Google RPC error bodies with ``details``."""

from __future__ import annotations

import json
from typing import Any

from llmkernel.types import Usage
from llmkernel_http.testing.fake_server import FakeResponse, Gate, Pause

MODEL = "gemini-2.5-flash"
API_KEY = "AIza-test-SECRET-9b8c7d6e5f"


def path(model: str = MODEL, method: str = "generateContent", version: str = "v1beta") -> str:
    return f"/{version}/models/{model}:{method}"


def usage_metadata(usage: Usage, *, tool_prompt: int = 0) -> dict[str, Any]:
    """The ``usageMetadata`` Gemini would send for a normalized ``usage``."""
    data: dict[str, Any] = {
        "promptTokenCount": usage.input_tokens - tool_prompt,
        "candidatesTokenCount": usage.output_tokens - usage.reasoning_tokens,
        "totalTokenCount": usage.input_tokens + usage.output_tokens,
    }
    if usage.cached_input_tokens:
        data["cachedContentTokenCount"] = usage.cached_input_tokens
    if usage.reasoning_tokens:
        data["thoughtsTokenCount"] = usage.reasoning_tokens
    if tool_prompt:
        data["toolUsePromptTokenCount"] = tool_prompt
    return data


def response(
    parts: list[dict[str, Any]] | None,
    *,
    finish: str | None = "STOP",
    usage: dict[str, Any] | None = None,
    model: str = MODEL,
    response_id: str = "resp-abc123",
    **candidate_extra: Any,
) -> dict[str, Any]:
    """A ``GenerateContentResponse`` with one candidate."""
    candidate: dict[str, Any] = {"index": 0, **candidate_extra}
    if parts is not None:
        candidate["content"] = {"role": "model", "parts": parts}
    if finish:
        candidate["finishReason"] = finish
    body: dict[str, Any] = {
        "candidates": [candidate],
        "modelVersion": model,
        "responseId": response_id,
    }
    if usage is not None:
        body["usageMetadata"] = usage
    return body


def call_part(name: str, args: dict[str, Any], signature: str | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {"functionCall": {"name": name, "args": args}}
    if signature:
        part["thoughtSignature"] = signature
    return part


def sse(*items: dict[str, Any] | str | Gate | Pause) -> list[str | Gate | Pause]:
    """SSE pieces as Gemini frames them: ``data: <json>\\r\\n\\r\\n``."""
    return [
        f"data: {json.dumps(item)}\r\n\r\n" if isinstance(item, dict) else item for item in items
    ]


def stream_response(*items: dict[str, Any] | str | Gate | Pause, **kwargs: Any) -> FakeResponse:
    return FakeResponse.sse(sse(*items), **kwargs)


def error_body(code: int, status: str, message: str, *details: dict[str, Any]) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return {"error": error}


def retry_info(delay: str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}


def quota_failure(*quota_ids: str) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [
            {
                "quotaMetric": "generativelanguage.googleapis.com/"
                "generate_content_free_tier_requests",
                "quotaId": quota_id,
                "quotaDimensions": {"location": "global", "model": MODEL},
                "quotaValue": "10",
            }
            for quota_id in quota_ids
        ],
    }


QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
)

#: one realistic error answer per kernel error kind: (HTTP status, body)
ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "authentication": (
        400,
        error_body(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": "API key not valid. Please pass a valid API key.",
            },
        ),
    ),
    "permission": (
        403,
        error_body(403, "PERMISSION_DENIED", "The caller does not have permission"),
    ),
    "not_found": (
        404,
        error_body(
            404,
            "NOT_FOUND",
            "models/gemini-0.1-nope is not found for API version v1beta, or is not "
            "supported for generateContent. Call ListModels to see the list of available "
            "models and their supported methods.",
        ),
    ),
    "rate_limit": (
        429,
        error_body(
            429,
            "RESOURCE_EXHAUSTED",
            QUOTA_MESSAGE,
            quota_failure("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"),
            retry_info("17s"),
        ),
    ),
    "quota": (
        429,
        error_body(
            429,
            "RESOURCE_EXHAUSTED",
            QUOTA_MESSAGE,
            quota_failure(
                "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
            ),
            retry_info("3600s"),
        ),
    ),
    "invalid_request": (
        400,
        error_body(
            400,
            "INVALID_ARGUMENT",
            'Invalid JSON payload received. Unknown name "bogus": Cannot find field.',
        ),
    ),
    "context_window": (
        400,
        error_body(
            400,
            "INVALID_ARGUMENT",
            "The input token count (1200293) exceeds the maximum number of tokens allowed "
            "(1048576).",
        ),
    ),
    "server": (
        500,
        error_body(
            500,
            "INTERNAL",
            "An internal error has occurred. Please retry or report in "
            "https://developers.generativeai.google/guide/troubleshooting",
        ),
    ),
    "overloaded": (
        503,
        error_body(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
    ),
}


def error_response(kind: str, *, retry_delay: str | None = None) -> FakeResponse:
    status, body = ERRORS[kind]
    if retry_delay is not None:
        body = json.loads(json.dumps(body))
        details = [d for d in body["error"].get("details", []) if "RetryInfo" not in d["@type"]]
        body["error"]["details"] = [*details, retry_info(retry_delay)]
    return FakeResponse.json_body(body, status=status)


def models_page(ids: list[str], next_token: str | None = None) -> dict[str, Any]:
    page: dict[str, Any] = {
        "models": [
            {
                "name": f"models/{model_id}",
                "version": "001",
                "displayName": model_id,
                "inputTokenLimit": 1048576,
                "outputTokenLimit": 65536,
                "supportedGenerationMethods": ["generateContent", "countTokens"],
            }
            for model_id in ids
        ]
    }
    if next_token:
        page["nextPageToken"] = next_token
    return page
