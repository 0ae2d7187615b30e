"""What well-known Ollama models can do, without asking the server.

Ollama serves whatever the user pulled, so this is a small table of popular library
models keyed by their base name (``qwen3`` covers ``qwen3:8b``, ``qwen3:30b-a3b``
and ``library/qwen3:latest``). A model not in the table is unknown (``None``); the
server's own answer is available through ``OllamaProvider.fetch_capabilities``
(``POST /api/show``). Context windows are the model's trained maximum; Ollama loads
models with a smaller ``num_ctx`` unless told otherwise. Structured output (a JSON
schema in ``format``) is constrained decoding, so every chat model has it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from llmkernel.types import Capabilities


def _chat(
    *, tools: bool = True, images: bool = False, reasoning: bool = False, context: int | None = None
) -> Capabilities:
    return Capabilities(
        tools=tools, images=images, json_schema=True, reasoning=reasoning, context_window=context
    )


def _embedder(context: int) -> Capabilities:
    return Capabilities(tools=False, json_schema=False, embeddings=True, context_window=context)


KNOWN_MODELS: Mapping[str, Capabilities] = {
    "llama3.2": _chat(context=131_072),
    "llama3.1": _chat(context=131_072),
    "llama3.3": _chat(context=131_072),
    "llama3.2-vision": _chat(tools=False, images=True, context=131_072),
    "qwen2.5": _chat(context=32_768),
    "qwen2.5-coder": _chat(context=32_768),
    "qwen2.5vl": _chat(tools=False, images=True, context=128_000),
    "qwen3": _chat(reasoning=True, context=40_960),
    "mistral": _chat(context=32_768),
    "mistral-nemo": _chat(context=131_072),
    "gemma3": _chat(tools=False, images=True, context=131_072),
    "gpt-oss": _chat(reasoning=True, context=131_072),
    "deepseek-r1": _chat(reasoning=True, context=131_072),
    "llava": _chat(tools=False, images=True, context=32_768),
    "nomic-embed-text": _embedder(2_048),
    "mxbai-embed-large": _embedder(512),
}

#: Models that take a thinking level (``"low"``/``"medium"``/``"high"``) instead of
#: ``true``/``false`` in ``think``, and cannot turn thinking off.
LEVELED_THINKING = ("gpt-oss",)


def base_name(model: str) -> str:
    """``"library/qwen3:8b"`` -> ``"qwen3"``: the name without namespace or tag."""
    name = model.strip().lower()
    name = name.rsplit("/", 1)[-1]
    return name.split(":", 1)[0]


def known_capabilities(model: str) -> Capabilities | None:
    return KNOWN_MODELS.get(base_name(model))


def has_leveled_thinking(model: str) -> bool:
    return base_name(model) in LEVELED_THINKING


def capabilities_from_show(model: str, body: Mapping[str, Any]) -> Capabilities:
    """Capabilities from an ``/api/show`` answer: its ``capabilities`` list
    (``completion``, ``tools``, ``vision``, ``thinking``, ``embedding``) and the
    ``<arch>.context_length`` entry of ``model_info``. Missing pieces fall back to
    the table."""
    fallback = known_capabilities(model) or Capabilities()
    raw = body.get("capabilities")
    names: set[str] = {c for c in raw if isinstance(c, str)} if isinstance(raw, list) else set()
    context = _context_length(body.get("model_info")) or fallback.context_window
    if not names:
        return Capabilities(
            tools=fallback.tools,
            images=fallback.images,
            json_schema=fallback.json_schema,
            reasoning=fallback.reasoning,
            embeddings=fallback.embeddings,
            context_window=context,
            max_output_tokens=fallback.max_output_tokens,
        )
    chat = "completion" in names
    return Capabilities(
        tools="tools" in names,
        images="vision" in names,
        json_schema=chat,
        reasoning="thinking" in names,
        embeddings="embedding" in names or "embed" in names,
        context_window=context,
    )


def _context_length(info: Any) -> int | None:
    if not isinstance(info, Mapping):
        return None
    for key, value in info.items():
        if (
            isinstance(key, str)
            and key.endswith(".context_length")
            and isinstance(value, int)
            and not isinstance(value, bool)
            and value > 0
        ):
            return value
    return None


def declared(extra: Iterable[str]) -> list[str]:
    """The configured models first, then the well-known ones, without duplicates."""
    seen: dict[str, None] = {}
    for name in (*extra, *KNOWN_MODELS):
        seen.setdefault(name, None)
    return list(seen)
