"""What a batch is made of: one request a line, read from JSONL or plain text.

A JSONL line is either OpenAI's chat shape with a ``custom_id``
(``{"custom_id": "a", "model": ..., "messages": [...], ...}``) or a line of an
OpenAI ``/v1/batches`` input file (``{"custom_id", "method", "url", "body"}``), so
existing batch files work as they are. A text file is one prompt a line. A bad line
is reported with its number and skipped; it never stops the run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel

__all__ = [
    "BadLine",
    "BatchItem",
    "call_arguments",
    "item_from",
    "read_items",
]

#: the chat fields a line may carry besides ``model`` and ``messages``; anything
#: else is a provider option, passed through as it is
_FIELDS = (
    "tools",
    "tool_choice",
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "response_format",
    "reasoning",
    "user",
)
_IGNORED = ("custom_id", "stream", "stream_options", "metadata")
CHAT_URL = "/v1/chat/completions"


@attrs.frozen(kw_only=True)
class BatchItem:
    """One request of a batch: its ``custom_id``, the ``line`` it came from (1-based;
    0 when built in Python) and its ``body`` in OpenAI's chat shape."""

    custom_id: str
    body: Mapping[str, Any]
    line: int = 0

    @property
    def model(self) -> str | None:
        model = self.body.get("model")
        return model if isinstance(model, str) and model else None


@attrs.frozen(kw_only=True)
class BadLine:
    """A line that cannot be sent: its number and why."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def item_from(
    data: Any,
    *,
    line: int = 0,
    model: str | None = None,
    system: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> BatchItem:
    """A :class:`BatchItem` from one decoded line (or a dict given in Python);
    ``ValueError`` naming the field when it is not a request. ``model`` fills a
    line without one; ``system`` is put first when the line has no system message;
    ``options`` (``-o``, a template's) fill the fields a line does not set."""
    if isinstance(data, BatchItem):
        return data
    if not isinstance(data, Mapping):
        raise ValueError(f"expected a JSON object, not {type(data).__name__}")
    custom_id = data.get("custom_id")
    if custom_id is None:
        if line <= 0:
            raise ValueError("custom_id is missing")
        custom_id = f"line-{line}"
    if not isinstance(custom_id, str) or not custom_id:
        raise ValueError(f"custom_id must be a non-empty string, not {custom_id!r}")
    body: Mapping[str, Any] = data
    if "body" in data or "url" in data or "method" in data:
        method = data.get("method", "POST")
        url = data.get("url", CHAT_URL)
        if method != "POST":
            raise ValueError(f"method must be 'POST', not {method!r}")
        if url != CHAT_URL:
            raise ValueError(f"url must be {CHAT_URL!r} (chat batches only), not {url!r}")
        body = data.get("body")  # type: ignore[assignment]
        if not isinstance(body, Mapping):
            raise ValueError("body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list")
    out = {k: v for k, v in body.items() if k not in _IGNORED}
    if "max_completion_tokens" in out and "max_tokens" not in out:
        out["max_tokens"] = out.pop("max_completion_tokens")
    if not out.get("model") and model:
        out["model"] = model
    for key, value in (options or {}).items():
        out.setdefault(key, value)
    if system and not any(
        isinstance(m, Mapping) and m.get("role") in ("system", "developer") for m in messages
    ):
        out["messages"] = [{"role": "system", "content": system}, *messages]
    return BatchItem(custom_id=custom_id, body=out, line=line)


def call_arguments(item: BatchItem, metadata: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments of ``Kernel.achat`` for ``item``: the chat fields as they
    are, anything else under ``options``."""
    body = item.body
    kwargs: dict[str, Any] = {"model": item.model, "messages": body["messages"]}
    options: dict[str, Any] = {}
    for key, value in body.items():
        if key in ("model", "messages"):
            continue
        if key in _FIELDS:
            kwargs[key] = value
        else:
            options[key] = value
    if options:
        kwargs["options"] = options
    if metadata:
        kwargs["metadata"] = dict(metadata)
    return kwargs


Format = Literal["auto", "jsonl", "text"]


def _detect(path: Path, first: str) -> Literal["jsonl", "text"]:
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if path.suffix.lower() == ".txt":
        return "text"
    return "jsonl" if first.lstrip().startswith("{") else "text"


def read_items(
    path: str | Path,
    *,
    format: Format = "auto",
    model: str | None = None,
    system: str | None = None,
    kernel: Kernel | None = None,
    options: Mapping[str, Any] | None = None,
    render: Callable[[str], str] | None = None,
) -> Iterator[BatchItem | BadLine]:
    """The file's requests in order, a :class:`BadLine` for each line that is not
    one (bad JSON, a missing field, a repeated ``custom_id``, or - given a
    ``kernel`` - a request the kernel refuses to build). Blank lines are skipped.
    ``render`` turns each line of a text file into its prompt (a template's)."""
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        lines = iter(handle)
        first = ""
        buffered: list[str] = []
        for raw in lines:
            buffered.append(raw)
            if raw.strip():
                first = raw
                break
        kind = _detect(path, first) if format == "auto" else format
        defaults = {"model": model, "system": system, "options": options}
        yield from _items(_chain(buffered, lines), kind, defaults, kernel, render)


def _chain(first: list[str], rest: Iterable[str]) -> Iterator[str]:
    yield from first
    yield from rest


def _items(
    lines: Iterable[str],
    kind: Literal["jsonl", "text"],
    defaults: Mapping[str, Any],
    kernel: Kernel | None,
    render: Callable[[str], str] | None,
) -> Iterator[BatchItem | BadLine]:
    seen: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        try:
            if kind == "text":
                prompt = raw.rstrip("\r\n")
                item = item_from(
                    {
                        "messages": [
                            {"role": "user", "content": render(prompt) if render else prompt}
                        ]
                    },
                    line=number,
                    **defaults,
                )
            else:
                try:
                    data = json.loads(text)
                except ValueError as exc:
                    raise ValueError(f"not JSON ({exc})") from None
                item = item_from(data, line=number, **defaults)
            if item.custom_id in seen:
                raise ValueError(f"custom_id {item.custom_id!r} is repeated")
            if kernel is not None:
                _check(kernel, item)
        except ValueError as exc:
            yield BadLine(line=number, message=str(exc))
            continue
        seen.add(item.custom_id)
        yield item


def _check(kernel: Kernel, item: BatchItem) -> None:
    from llmkernel.errors import LLMKernelError

    try:
        request = kernel.build_request(**call_arguments(item))
        kernel.models.resolve(request.model)
    except LLMKernelError as exc:
        raise ValueError(str(exc).splitlines()[0]) from None
