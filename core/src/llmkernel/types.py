"""The kernel's value types: messages, tools, requests, responses, usage, stream events.

Every type is a frozen, keyword-only attrs class. Users may pass plain OpenAI-style
dicts for messages, tools, tool choice and response format; :mod:`llmkernel.convert`
turns them into these types once, at the API boundary.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal, TypeAlias, TypeVar

import attrs

_T = TypeVar("_T")
_FIELD_NAMES: dict[type, tuple[tuple[str, ...], frozenset[str]]] = {}


def replace(instance: _T, **changes: Any) -> _T:
    """``attrs.evolve`` for the kernel's hot path: copies the fields of a frozen
    attrs instance with ``changes`` applied, without running ``__init__`` again (the
    values were checked when the instance was made). Not for classes with
    ``__attrs_post_init__`` checks on the changed fields."""
    cls = type(instance)
    known = _FIELD_NAMES.get(cls)
    if known is None:
        fields = tuple(f.name for f in attrs.fields(cls))  # type: ignore[arg-type]
        known = _FIELD_NAMES[cls] = (fields, frozenset(fields))
    names, name_set = known
    if not name_set.issuperset(changes):
        unknown = sorted(set(changes) - name_set)
        raise TypeError(f"{cls.__name__} has no field {unknown[0]!r}")
    new = object.__new__(cls)
    for name in names:
        object.__setattr__(new, name, changes[name] if name in changes else getattr(instance, name))
    return new


Role: TypeAlias = Literal["system", "developer", "user", "assistant", "tool"]
FinishReason: TypeAlias = Literal["stop", "length", "tool_calls", "content_filter"]
ReasoningEffort: TypeAlias = Literal["minimal", "low", "medium", "high"]


# --------------------------------------------------------------------------- parts


@attrs.frozen(kw_only=True)
class TextPart:
    """A run of text in a message. ``cache_control`` marks a prompt-cache breakpoint
    for providers that take one (Anthropic: ``{"type": "ephemeral", "ttl": "1h"}``);
    others ignore it."""

    text: str
    cache_control: Mapping[str, Any] | None = None
    type: Literal["text"] = "text"


@attrs.frozen(kw_only=True)
class ImagePart:
    """An image, either by ``url`` or inline as base64 ``data`` with its ``media_type``."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    detail: Literal["auto", "low", "high"] | None = None
    cache_control: Mapping[str, Any] | None = None
    type: Literal["image"] = "image"

    def __attrs_post_init__(self) -> None:
        if (self.url is None) == (self.data is None):
            raise ValueError("ImagePart needs exactly one of url= or data=")
        if self.data is not None and not self.media_type:
            raise ValueError("ImagePart with data= needs media_type= (e.g. 'image/png')")


@attrs.frozen(kw_only=True)
class FilePart:
    """A document (a PDF, say) sent with the prompt: by ``url`` or inline as base64
    ``data``, with its ``media_type`` and optional ``filename``. Providers that take
    documents send it in their own shape (OpenAI ``file``, Anthropic ``document``,
    Gemini ``inlineData``); the others refuse it, naming the message."""

    media_type: str
    data: str | None = None
    url: str | None = None
    filename: str | None = None
    cache_control: Mapping[str, Any] | None = None
    type: Literal["file"] = "file"

    def __attrs_post_init__(self) -> None:
        if (self.url is None) == (self.data is None):
            raise ValueError("FilePart needs exactly one of url= or data=")


@attrs.frozen(kw_only=True)
class ReasoningPart:
    """The model's thinking, kept so it can be sent back on the next turn.

    ``signature`` is the provider's opaque proof of the thinking (Anthropic's
    ``signature``, Gemini's ``thoughtSignature``); ``redacted`` holds Anthropic's
    encrypted ``redacted_thinking`` data. Both must be sent back unchanged.
    """

    text: str = ""
    signature: str | None = None
    redacted: str | None = None
    type: Literal["reasoning"] = "reasoning"


Part: TypeAlias = TextPart | ImagePart | FilePart | ReasoningPart


# --------------------------------------------------------------------------- tools


@attrs.frozen(kw_only=True)
class Tool:
    """A function the model may call; ``parameters`` is a JSON schema object.
    ``cache_control`` marks a prompt-cache breakpoint (Anthropic) after this tool."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = attrs.field(
        factory=lambda: {"type": "object", "properties": {}}
    )
    strict: bool | None = None
    cache_control: Mapping[str, Any] | None = None


@attrs.frozen(kw_only=True)
class ToolChoice:
    """``auto``, ``none``, ``required`` (any tool) or ``tool`` (the one named)."""

    mode: Literal["auto", "none", "required", "tool"] = "auto"
    name: str | None = None


@attrs.frozen(kw_only=True)
class ToolCall:
    """A call the model made. ``arguments`` is the parsed JSON object.

    ``signature`` carries a provider's opaque token tied to the call (Gemini's
    ``thoughtSignature``) that must be sent back with it.
    """

    id: str
    name: str
    arguments: Mapping[str, Any] = attrs.field(factory=dict)
    signature: str | None = None

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments, separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------- messages


@attrs.frozen(kw_only=True)
class Message:
    """One chat message. ``developer`` is OpenAI's name for system instructions;
    providers without it treat it as ``system``.

    A tool result is ``Message(role="tool", tool_call_id=..., content=...)``. An
    assistant message carries its ``tool_calls`` and any ``ReasoningPart`` the
    provider needs back on the next turn; append ``response.message`` to continue.
    """

    role: Role
    content: tuple[Part, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    @property
    def reasoning(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, ReasoningPart))

    @classmethod
    def user(cls, text: str) -> Message:
        return cls(role="user", content=(TextPart(text=text),))

    @classmethod
    def system(cls, text: str) -> Message:
        return cls(role="system", content=(TextPart(text=text),))

    @classmethod
    def assistant(cls, text: str) -> Message:
        return cls(role="assistant", content=(TextPart(text=text),))

    @classmethod
    def tool_result(cls, tool_call_id: str, content: str, *, name: str | None = None) -> Message:
        return cls(
            role="tool", tool_call_id=tool_call_id, name=name, content=(TextPart(text=content),)
        )


# --------------------------------------------------------------------------- requests


@attrs.frozen(kw_only=True)
class ResponseFormat:
    """Structured output: ``json_object`` (any JSON) or ``json_schema`` (that schema)."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    schema: Mapping[str, Any] | None = None
    name: str = "response"
    strict: bool = True


@attrs.frozen(kw_only=True)
class Reasoning:
    """Thinking controls: an ``effort`` level, or a ``budget_tokens`` for thinking."""

    effort: ReasoningEffort | None = None
    budget_tokens: int | None = None


@attrs.frozen(kw_only=True)
class ChatRequest:
    """A chat request. ``model`` is what the user asked for (``provider/model`` or an
    alias) at the API, and the provider's own model id once routed to a candidate.

    ``options`` holds provider-specific extras passed through unchanged.
    ``metadata`` says who is asking (``tenant``, ``key``, anything the application
    adds) for plugins: cache namespaces, ledgers, budgets, rate limits. It is never
    sent upstream.
    """

    model: str
    messages: tuple[Message, ...]
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    response_format: ResponseFormat | None = None
    reasoning: Reasoning | None = None
    user: str | None = None
    options: Mapping[str, Any] = attrs.field(factory=dict)
    metadata: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class EmbeddingRequest:
    """Texts to embed, in order; ``dimensions`` asks for shorter vectors where supported.

    ``metadata`` says who is asking, as on :class:`ChatRequest`; never sent upstream.
    """

    model: str
    inputs: tuple[str, ...]
    dimensions: int | None = None
    options: Mapping[str, Any] = attrs.field(factory=dict)
    metadata: Mapping[str, str] = attrs.field(factory=dict)


# --------------------------------------------------------------------------- usage


@attrs.frozen(kw_only=True)
class Usage:
    """Token counts in one convention for every provider (OpenAI's).

    ``input_tokens`` is every input token the model read, cache reads and cache
    writes included; ``cached_input_tokens`` and ``cache_write_tokens`` are the parts
    of it read from and written to the provider's prompt cache. ``output_tokens`` is
    every output token, reasoning included; ``reasoning_tokens`` is the part of it
    spent thinking. ``total_tokens = input_tokens + output_tokens``.
    ``cache_write_1h_tokens`` is the part of ``cache_write_tokens`` written with a
    one-hour lifetime (Anthropic prices those apart); the rest are 5-minute writes.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_1h_tokens: int = 0
    #: the counts are the kernel's estimate, not the provider's report (a stream that
    #: ended before its usage: counted from the request and the streamed text)
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def uncached_input_tokens(self) -> int:
        """Input tokens charged at the plain input rate."""
        return max(0, self.input_tokens - self.cached_input_tokens - self.cache_write_tokens)

    def as_dict(self, *, total: bool = False) -> dict[str, int]:
        """Every field by name (what ``Usage(**d)`` takes back); with ``total``, also
        ``total_tokens``. The one conversion: JSON output, stores and exports use it."""
        data: dict[str, int] = attrs.asdict(self)
        if total:
            data["total_tokens"] = self.total_tokens
        return data

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            cache_write_1h_tokens=self.cache_write_1h_tokens + other.cache_write_1h_tokens,
            estimated=self.estimated or other.estimated,
        )


# --------------------------------------------------------------------------- responses


@attrs.frozen(kw_only=True)
class Response:
    """A normalized chat response.

    Providers fill ``message``, ``finish_reason``, ``usage``, ``id``, ``model``,
    ``headers`` (the HTTP response's headers, lower-cased names) and, for structured
    output, ``parsed``; the kernel adds ``provider``, ``cost``, ``latency``,
    ``attempts`` and ``cached``. A cache that answered says how in ``cache_kind``
    (``"exact"``, ``"semantic"``) and, for a semantic hit, the cosine ``similarity``
    of the two prompts.
    """

    message: Message
    finish_reason: FinishReason = "stop"
    usage: Usage = attrs.field(factory=Usage)
    id: str | None = None
    model: str = ""
    provider: str = ""
    parsed: Any = None
    refusal: str | None = None
    cost: Decimal | None = None
    latency: float = 0.0
    attempts: int = 1
    cached: bool = False
    cache_kind: Literal["exact", "semantic"] | None = None
    similarity: float | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)

    @property
    def text(self) -> str:
        return self.message.text

    @property
    def reasoning(self) -> str:
        return self.message.reasoning

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return self.message.tool_calls


@attrs.frozen(kw_only=True)
class EmbeddingResponse:
    """One vector per input, in input order."""

    vectors: list[list[float]]
    model: str = ""
    provider: str = ""
    usage: Usage = attrs.field(factory=Usage)
    cost: Decimal | None = None
    latency: float = 0.0
    attempts: int = 1
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)


# --------------------------------------------------------------------------- stream events


@attrs.frozen(kw_only=True)
class TextDelta:
    """A piece of the answer's text."""

    text: str
    type: Literal["text"] = "text"


@attrs.frozen(kw_only=True)
class ReasoningDelta:
    """A piece of thinking. ``signature``/``redacted`` arrive on their own deltas;
    ``index`` separates distinct thinking blocks."""

    text: str = ""
    signature: str | None = None
    redacted: str | None = None
    index: int = 0
    type: Literal["reasoning"] = "reasoning"


@attrs.frozen(kw_only=True)
class ToolCallDelta:
    """A fragment of a tool call, keyed by ``index``. ``id`` and ``name`` come on the
    first fragment of a call; ``arguments`` is a piece of its JSON text."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    signature: str | None = None
    type: Literal["tool_call"] = "tool_call"


@attrs.frozen(kw_only=True)
class UsageEvent:
    """Token usage. The kernel emits one at the end of every stream, with ``cost``."""

    usage: Usage
    cost: Decimal | None = None
    type: Literal["usage"] = "usage"


@attrs.frozen(kw_only=True)
class FinishEvent:
    """The stream's last event: why the model stopped."""

    finish_reason: FinishReason
    type: Literal["finish"] = "finish"


@attrs.frozen(kw_only=True)
class MetadataEvent:
    """Provider facts learned mid-stream: the response id, the model that answered,
    a refusal, the HTTP response headers. Folded into the final response; not shown
    to users by the kernel."""

    id: str | None = None
    model: str | None = None
    refusal: str | None = None
    headers: Mapping[str, str] | None = None
    type: Literal["metadata"] = "metadata"


@attrs.frozen(kw_only=True)
class ErrorEvent:
    """A stream that failed after its first event ends with this, then raises."""

    error: Exception
    type: Literal["error"] = "error"


StreamEvent: TypeAlias = (
    TextDelta
    | ReasoningDelta
    | ToolCallDelta
    | UsageEvent
    | FinishEvent
    | MetadataEvent
    | ErrorEvent
)


# --------------------------------------------------------------------------- model facts


@attrs.frozen(kw_only=True)
class Capabilities:
    """What a model can do. ``None`` for a window means unknown."""

    tools: bool = True
    images: bool = False
    #: documents (PDF) as input, :class:`FilePart`
    documents: bool = False
    json_schema: bool = False
    reasoning: bool = False
    embeddings: bool = False
    context_window: int | None = None
    max_output_tokens: int | None = None


@attrs.frozen(kw_only=True)
class ModelInfo:
    """A model a provider serves, as listed by it."""

    id: str
    provider: str = ""
    capabilities: Capabilities | None = None
    owned_by: str | None = None


@attrs.frozen(kw_only=True)
class Health:
    """The result of a provider's health check."""

    ok: bool
    latency: float = 0.0
    detail: str = ""


@attrs.frozen(kw_only=True)
class ModelPrice:
    """Prices in a currency (USD by default) per million tokens, as ``Decimal``.

    ``cached_input``, ``cache_write`` and ``reasoning`` default to the input and
    output rates when the provider does not price them apart; ``cache_write_1h``
    (one-hour cache writes) defaults to ``cache_write``.

    ``price_model`` may return any object with a ``cost(usage) -> Decimal`` method
    (tiered prices, say); this class is the common case.
    """

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    reasoning: Decimal | None = None
    cache_write_1h: Decimal | None = None
    currency: str = "USD"
    source: str = ""

    def cost(self, usage: Usage) -> Decimal:
        """The cost of ``usage``: each bucket at its own rate."""
        million = Decimal(1_000_000)
        cached = self.cached_input if self.cached_input is not None else self.input
        write = self.cache_write if self.cache_write is not None else self.input
        write_1h = self.cache_write_1h if self.cache_write_1h is not None else write
        reasoning = self.reasoning if self.reasoning is not None else self.output
        plain_output = max(0, usage.output_tokens - usage.reasoning_tokens)
        writes_1h = min(usage.cache_write_1h_tokens, usage.cache_write_tokens)
        total = (
            usage.uncached_input_tokens * self.input
            + usage.cached_input_tokens * cached
            + (usage.cache_write_tokens - writes_1h) * write
            + writes_1h * write_1h
            + plain_output * self.output
            + usage.reasoning_tokens * reasoning
        )
        return total / million


@attrs.frozen(kw_only=True)
class TokenCount:
    """A token count; ``exact`` is False when it is an estimate, with ``method`` saying how."""

    tokens: int
    exact: bool
    method: str


@attrs.frozen(kw_only=True)
class CostEstimate:
    """What a call may cost before it is sent (``kernel.estimate_cost``).

    ``worst``: counted input plus ``max_output_tokens`` (the request's
    ``max_tokens``, else the model's maximum output), billed the dearest way they
    can be (what budgets reserve). ``typical``: counted input plus
    ``typical_output_tokens`` at the plain rates. Both ``None`` when the model is
    unpriced. ``input_exact`` says whether the input count came from a real
    tokenizer.
    """

    model: str
    worst: Decimal | None
    typical: Decimal | None
    input_tokens: int
    input_exact: bool
    max_output_tokens: int
    typical_output_tokens: int
