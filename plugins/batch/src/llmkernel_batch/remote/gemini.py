"""Gemini batch mode with inlined requests: ``POST
/{version}/models/{model}:batchGenerateContent`` with ``{"batch": {"display_name",
"input_config": {"requests": {"requests": [{"request": GenerateContentRequest,
"metadata": {"key": custom_id}}]}}}}`` answers a long-running operation named
``batches/{id}``; ``GET /{version}/batches/{id}`` polls it (``metadata.state``:
``BATCH_STATE_PENDING``, ``_RUNNING``, ``_SUCCEEDED``, ``_FAILED``, ``_CANCELLED``,
``_EXPIRED``) and, once done, carries ``response.inlinedResponses.inlinedResponses``
(each a ``response`` or an ``error`` status, in the order sent); ``POST
/{version}/batches/{id}:cancel`` cancels. Key in ``x-goog-api-key``. From Google's
Gemini API reference (ai.google.dev/api/batch-api and the Batch API guide, checked
2026-11-30). Answers are matched by ``metadata.key`` when the service echoes it,
else by position.

Each ``request`` is the body the gemini plugin sends to ``generateContent`` (its
``chat_body``, with the instance's ``schema_format``), so a line is sent as the
same line would be as a chat call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llmkernel.types import Usage
from llmkernel_batch.remote.base import (
    Endpoint,
    Http,
    Parsed,
    RemoteError,
    Status,
    error_kind_for_status,
    request_body,
    settings_for,
)

if TYPE_CHECKING:
    import httpx

    from llmkernel.types import ChatRequest
    from llmkernel_batch.items import BatchItem
    from llmkernel_batch.store import BatchJob

__all__ = ["GeminiBatches"]

_STATES: dict[str, Status] = {
    "PENDING": "in_progress",
    "QUEUED": "in_progress",
    "RUNNING": "in_progress",
    "SUCCEEDED": "completed",
    "FAILED": "failed",
    "CANCELLING": "cancelling",
    "CANCELLED": "cancelled",
    "EXPIRED": "expired",
}
_FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter",
           "RECITATION": "content_filter", "PROHIBITED_CONTENT": "content_filter",
           "BLOCKLIST": "content_filter", "SPII": "content_filter"}  # fmt: skip
_CODES = {400: "invalid_request", 401: "authentication", 403: "permission", 404: "not_found",
          429: "rate_limit", 500: "server", 503: "overloaded", 504: "timeout"}  # fmt: skip


class GeminiBatches:
    def __init__(self, where: Endpoint, client: httpx.AsyncClient | None = None) -> None:
        from llmkernel_gemini.settings import GeminiSettings

        self.settings = settings_for(where, GeminiSettings)
        headers = {"content-type": "application/json"}
        if where.api_key:
            headers["x-goog-api-key"] = where.api_key
        self.http = Http(self.settings.api_root, headers, client)

    async def submit(self, items: Sequence[BatchItem], model: str) -> tuple[str, Status, Any]:
        from llmkernel_gemini.convert import chat_body, model_path

        name = model_path(model)
        schema_format = self.settings.schema_format

        def build(request: ChatRequest) -> dict[str, Any]:
            return chat_body(request, schema_format=schema_format)

        body = {
            "batch": {
                "display_name": f"llmkernel-{len(items)}-requests",
                "input_config": {
                    "requests": {
                        "requests": [
                            {
                                "request": request_body(i, model, build),
                                "metadata": {"key": i.custom_id},
                            }
                            for i in items
                        ]
                    }
                },
            }
        }
        operation = await self.http.json("POST", f"/{name}:batchGenerateContent", json=body)
        if not isinstance(operation, Mapping) or not operation.get("name"):
            raise RemoteError("batchGenerateContent: the answer has no batch name")
        return str(operation["name"]), _status(operation), operation

    async def poll(self, job: BatchJob) -> tuple[Status, Any]:
        operation = await self.http.json("GET", f"/{job.id}")
        return _status(operation), operation

    async def cancel(self, job: BatchJob) -> tuple[Status, Any]:
        await self.http.request("POST", f"/{job.id}:cancel")
        return await self.poll(job)

    async def results(self, job: BatchJob, info: Any) -> list[Parsed]:
        if not isinstance(info, Mapping):
            return []
        holder = info.get("response") or (info.get("metadata") or {}).get("output") or {}
        inlined = (holder.get("inlinedResponses") or {}).get("inlinedResponses") or []
        out = []
        for position, entry in enumerate(inlined):
            key = (entry.get("metadata") or {}).get("key")
            if not key and position < len(job.custom_ids):
                key = job.custom_ids[position]
            out.append(_entry(str(key or ""), entry))
        return out

    async def aclose(self) -> None:
        await self.http.aclose()


def _status(operation: Any) -> Status:
    meta = operation.get("metadata") or {} if isinstance(operation, Mapping) else {}
    raw = str(meta.get("state") or "")
    for prefix in ("BATCH_STATE_", "JOB_STATE_"):
        if raw.startswith(prefix):
            raw = raw[len(prefix) :]
    if raw in _STATES:
        return _STATES[raw]
    if operation.get("done"):
        return "failed" if operation.get("error") else "completed"
    if not raw or raw == "UNSPECIFIED":
        return "in_progress"
    raise RemoteError(f"unknown Gemini batch state {meta.get('state')!r}")


def _entry(custom_id: str, entry: Mapping[str, Any]) -> Parsed:
    error = entry.get("error")
    if isinstance(error, Mapping):
        code = error.get("code")
        return Parsed(
            custom_id=custom_id,
            ok=False,
            error_kind=_CODES.get(code, error_kind_for_status(code))
            if isinstance(code, int)
            else "provider",
            error_message=str(error.get("message") or error.get("status") or "error"),
        )
    response = entry.get("response") or {}
    candidates = response.get("candidates") or []
    if not candidates:
        feedback = response.get("promptFeedback") or {}
        return Parsed(
            custom_id=custom_id,
            ok=False,
            error_kind="content_filter" if feedback.get("blockReason") else "malformed_response",
            error_message=str(feedback.get("blockReason") or "no candidates in the response"),
        )
    candidate = candidates[0]
    texts: list[str] = []
    calls = []
    for part in (candidate.get("content") or {}).get("parts") or []:
        if part.get("thought"):
            continue
        if "text" in part:
            texts.append(str(part["text"]))
        elif "functionCall" in part:
            call = part["functionCall"]
            calls.append(
                {
                    "id": call.get("id"),
                    "name": call.get("name"),
                    "arguments": call.get("args") or {},
                }
            )
    usage = response.get("usageMetadata") or {}
    thoughts = int(usage.get("thoughtsTokenCount") or 0)
    finish = _FINISH.get(str(candidate.get("finishReason")), "stop")
    return Parsed(
        custom_id=custom_id,
        ok=True,
        text="".join(texts),
        tool_calls=calls,
        finish_reason="tool_calls" if calls and finish == "stop" else finish,
        usage=Usage(
            input_tokens=int(usage.get("promptTokenCount") or 0),
            output_tokens=int(usage.get("candidatesTokenCount") or 0) + thoughts,
            cached_input_tokens=int(usage.get("cachedContentTokenCount") or 0),
            reasoning_tokens=thoughts,
        ),
        id=response.get("responseId"),
        model=str(response.get("modelVersion") or ""),
    )
