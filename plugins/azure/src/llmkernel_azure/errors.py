"""Azure OpenAI's error answers: OpenAI's error body, read by llmkernel-openai,
plus Azure's content filter.

A prompt the content filter blocks is answered 400 with
``{"error": {"code": "content_filter", "message", "param": "prompt",
"innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result":
{"hate": {"filtered": true, "severity": "high"}, "jailbreak": {"filtered": true,
"detected": true}, ...}}}}``; it becomes :class:`AzureContentFilteredError` naming
the filtered categories. A completion the filter stops is a 200 whose choice has
``finish_reason: "content_filter"`` and ``content_filter_results``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from llmkernel import errors
from llmkernel_http import parse_retry_after, request_id_from
from llmkernel_openai import errors as openai_errors

__all__ = [
    "AzureContentFilteredError",
    "filter_summary",
    "filtered_categories",
    "for_response",
    "request_id",
]


class AzureContentFilteredError(errors.ContentFilteredError):
    """Azure's content filter blocked the request: ``categories`` lists the filtered
    ones (``hate``, ``sexual``, ``violence``, ``self_harm``, ``jailbreak``,
    ``profanity``, ``custom_blocklists``...), ``results`` is Azure's whole
    ``content_filter_result`` object."""

    def __init__(
        self, message: str, *, categories: list[str], results: Mapping[str, Any], **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.categories = categories
        self.results = results


def filtered_categories(results: Any) -> list[str]:
    """The categories marked ``filtered: true`` in a content filter result, with
    their severity when given (``violence (medium)``)."""
    if not isinstance(results, Mapping):
        return []
    found = []
    for name, value in results.items():
        if isinstance(value, Mapping) and value.get("filtered") is True:
            severity = value.get("severity")
            found.append(f"{name} ({severity})" if isinstance(severity, str) else str(name))
        elif isinstance(value, list):  # custom_blocklists: [{"filtered", "id"}]
            ids = [
                str(item.get("id"))
                for item in value
                if isinstance(item, Mapping) and item.get("filtered") is True
            ]
            if ids:
                found.append(f"{name} ({', '.join(ids)})")
    return found


def filter_summary(data: Any) -> str | None:
    """``"filtered by Azure's content filter: violence (medium)"`` for a response or
    chunk whose first choice was filtered, else None."""
    if not isinstance(data, Mapping):
        return None
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        return None
    choice = choices[0]
    if choice.get("finish_reason") != "content_filter":
        return None
    categories = filtered_categories(choice.get("content_filter_results"))
    detail = ", ".join(categories) if categories else "no category given"
    return f"filtered by Azure's content filter: {detail}"


def _content_filter(body: Any) -> tuple[str, Mapping[str, Any]] | None:
    error = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(error, Mapping) or error.get("code") != "content_filter":
        return None
    inner = error.get("innererror")
    results = inner.get("content_filter_result") if isinstance(inner, Mapping) else None
    message = error.get("message")
    return (
        message if isinstance(message, str) and message else "filtered by the content filter",
        results if isinstance(results, Mapping) else {},
    )


def for_response(response: Any, *, provider: str, model: str) -> errors.ProviderError:
    """The error for an HTTP error ``response`` (an httpx response, body read)."""
    headers = dict(response.headers)
    try:
        body = json.loads(response.text)
    except ValueError:
        body = None
    found = _content_filter(body)
    if found is not None:
        message, results = found
        categories = filtered_categories(results)
        if categories:
            message = f"{message} (filtered: {', '.join(categories)})"
        return AzureContentFilteredError(
            message,
            categories=[c.split(" (")[0] for c in categories],
            results=results,
            provider=provider,
            model=model,
            status=response.status_code,
            request_id=request_id(headers),
            code="content_filter",
            headers=headers,
        )
    error = openai_errors.error_for_response(response, provider=provider, model=model)
    if isinstance(error, errors.ModelNotFoundError) and "DeploymentNotFound" in response.text:
        error.message = (
            f"{error.message} (check the deployment name: map models to deployments "
            "with deployments = {...} in the provider's config)"
        )
    error.request_id = error.request_id or request_id(headers)
    error.retry_after = error.retry_after or parse_retry_after(headers)
    error.headers = headers
    return error


def request_id(headers: Mapping[str, str]) -> str | None:
    return headers.get("apim-request-id") or request_id_from(headers)
