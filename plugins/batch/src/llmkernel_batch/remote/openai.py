"""OpenAI Batch: upload a JSONL file (``POST /v1/files``, purpose ``batch``), create
the batch (``POST /v1/batches``, endpoint ``/v1/chat/completions``, window ``24h``),
poll it (``GET /v1/batches/{id}``), download the output and error files
(``GET /v1/files/{id}/content``), cancel (``POST /v1/batches/{id}/cancel``).

Wire shapes from OpenAI's API reference (platform.openai.com/docs/api-reference/batch
and /files, checked 2026-11-30): each output line is ``{"id", "custom_id",
"response": {"status_code", "request_id", "body"}, "error"}``; a batch's ``status``
is ``validating``, ``failed``, ``in_progress``, ``finalizing``, ``completed``,
``expired``, ``cancelling`` or ``cancelled``; requests an expired batch did not run
come back in the error file with code ``batch_expired``.
"""

from __future__ import annotations

import json
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
    jsonl,
)

if TYPE_CHECKING:
    import httpx

    from llmkernel_batch.items import BatchItem
    from llmkernel_batch.store import BatchJob

__all__ = ["OpenAIBatches", "parse_completion"]

_STATUS: dict[str, Status] = {
    "validating": "in_progress",
    "in_progress": "in_progress",
    "finalizing": "in_progress",
    "completed": "completed",
    "failed": "failed",
    "expired": "expired",
    "cancelling": "cancelling",
    "cancelled": "cancelled",
}
_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls",
           "function_call": "tool_calls", "content_filter": "content_filter"}  # fmt: skip


class OpenAIBatches:
    def __init__(self, where: Endpoint, client: httpx.AsyncClient | None = None) -> None:
        headers = {"authorization": f"Bearer {where.api_key}"} if where.api_key else {}
        if where.options.get("organization"):
            headers["openai-organization"] = str(where.options["organization"])
        self.http = Http(where.base_url, headers, client)

    async def submit(self, items: Sequence[BatchItem], model: str) -> tuple[str, Status, Any]:
        lines = []
        for item in items:
            body = {k: v for k, v in item.body.items() if k != "reasoning"}
            body["model"] = model
            reasoning = item.body.get("reasoning")
            if isinstance(reasoning, str):
                body["reasoning_effort"] = reasoning
            elif isinstance(reasoning, Mapping) and reasoning.get("effort"):
                body["reasoning_effort"] = reasoning["effort"]
            lines.append(
                json.dumps(
                    {
                        "custom_id": item.custom_id,
                        "method": "POST",
                        "url": "/v1/chat/completions",
                        "body": body,
                    },
                    separators=(",", ":"),
                )
            )
        content = ("\n".join(lines) + "\n").encode()
        uploaded = await self.http.json(
            "POST",
            "/files",
            data={"purpose": "batch"},
            files={"file": ("llmkernel-batch.jsonl", content, "application/jsonl")},
        )
        file_id = uploaded.get("id") if isinstance(uploaded, Mapping) else None
        if not isinstance(file_id, str):
            raise RemoteError("POST /files: the answer has no file id")
        batch = await self.http.json(
            "POST",
            "/batches",
            json={
                "input_file_id": file_id,
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
                "metadata": {"created_by": "llmkernel batch"},
            },
        )
        return str(batch["id"]), _status(batch), batch

    async def poll(self, job: BatchJob) -> tuple[Status, Any]:
        batch = await self.http.json("GET", f"/batches/{job.id}")
        return _status(batch), batch

    async def cancel(self, job: BatchJob) -> tuple[Status, Any]:
        batch = await self.http.json("POST", f"/batches/{job.id}/cancel")
        return _status(batch), batch

    async def results(self, job: BatchJob, info: Any) -> list[Parsed]:
        out: list[Parsed] = []
        for key in ("output_file_id", "error_file_id"):
            file_id = info.get(key) if isinstance(info, Mapping) else None
            if not file_id:
                continue
            response = await self.http.request("GET", f"/files/{file_id}/content")
            out.extend(_line(line) for line in jsonl(response.text) if isinstance(line, Mapping))
        return out

    async def aclose(self) -> None:
        await self.http.aclose()


def _status(batch: Any) -> Status:
    raw = batch.get("status") if isinstance(batch, Mapping) else None
    if raw not in _STATUS:
        raise RemoteError(f"unknown OpenAI batch status {raw!r}")
    return _STATUS[raw]


def _line(line: Mapping[str, Any]) -> Parsed:
    custom_id = str(line.get("custom_id", ""))
    response = line.get("response") or {}
    error = line.get("error")
    status = response.get("status_code") if isinstance(response, Mapping) else None
    body = response.get("body") if isinstance(response, Mapping) else None
    if status == 200 and isinstance(body, Mapping) and not error:
        return parse_completion(custom_id, body)
    if isinstance(error, Mapping):
        code = str(error.get("code") or "")
        kind = "expired" if code == "batch_expired" else (code or "provider")
        return Parsed(
            custom_id=custom_id,
            ok=False,
            error_kind=kind,
            error_message=str(error.get("message") or code),
        )
    detail = body.get("error") if isinstance(body, Mapping) else None
    message = detail.get("message") if isinstance(detail, Mapping) else None
    return Parsed(
        custom_id=custom_id,
        ok=False,
        error_kind=error_kind_for_status(status if isinstance(status, int) else None),
        error_message=str(message or f"HTTP {status}"),
    )


def parse_completion(custom_id: str, body: Mapping[str, Any]) -> Parsed:
    """A ``chat.completion`` object as a :class:`Parsed` answer."""
    choices = body.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], Mapping) else {}
    message = choice.get("message") or {}
    calls = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except ValueError:
            arguments = {"_raw": function.get("arguments")}
        calls.append({"id": call.get("id"), "name": function.get("name"), "arguments": arguments})
    usage = body.get("usage") or {}
    prompt = usage.get("prompt_tokens_details") or {}
    completion = usage.get("completion_tokens_details") or {}
    return Parsed(
        custom_id=custom_id,
        ok=True,
        text=message.get("content") or "",
        tool_calls=calls,
        finish_reason=_FINISH.get(str(choice.get("finish_reason")), "stop"),
        usage=Usage(
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            cached_input_tokens=int(prompt.get("cached_tokens") or 0),
            reasoning_tokens=int(completion.get("reasoning_tokens") or 0),
        ),
        id=body.get("id"),
        model=str(body.get("model") or ""),
    )
