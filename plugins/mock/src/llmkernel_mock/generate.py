"""Deterministic simulated content: text, tool arguments, JSON for a schema."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from typing import Any

from llmkernel.builtin import count_tokens
from llmkernel.types import ChatRequest, Message

SENTENCES = (
    "This is a simulated reply from the offline mock provider.",
    "No network was used and no key was needed.",
    "The same request with the same seed always gets the same answer.",
    "Every word arrives as its own token when the reply is streamed.",
    "Latency, time to first token and failures come from the config.",
    "Switch the model string to a real provider when you are ready.",
    "The kernel routes each request, retries it and falls back when a provider fails.",
    "Usage is counted in the same buckets for every provider.",
    "Costs are exact decimals, and an unknown price stays unpriced.",
    "Tools offered to the mock are called with arguments that fit their schema.",
)
WORDS = " ".join(SENTENCES).lower().replace(",", "").replace(".", "").split()


def rng_for(seed: int, request: ChatRequest) -> random.Random:
    """A generator seeded by the seed, the model and the conversation: the same
    request always gets the same reply."""
    digest = hashlib.sha256()
    digest.update(f"{seed}\0{request.model}\0".encode())
    for message in request.messages:
        digest.update(f"{message.role}\0{message.text}\0".encode())
        for call in message.tool_calls:
            digest.update(f"{call.name}\0{call.arguments_json}\0".encode())
    return random.Random(int.from_bytes(digest.digest()[:8], "big"))


def last_user_text(messages: tuple[Message, ...]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            return message.text
    return ""


def generated_text(rng: random.Random, words: int) -> str:
    """Whole sentences in a seeded order, cut to exactly ``words`` words."""
    order = list(SENTENCES)
    rng.shuffle(order)
    picked: list[str] = []
    index = 0
    while len(picked) < words:
        picked += order[index % len(order)].split()
        index += 1
    text = " ".join(picked[: max(1, words)])
    return text if text.endswith(".") else text.rstrip(",") + "."


def estimate_input_tokens(request: ChatRequest) -> int:
    """The kernel's own estimate: a simulated model counts like the fallback counter."""
    return max(1, count_tokens(request).tokens)


def value_for(schema: Mapping[str, Any], rng: random.Random, name: str = "value") -> Any:
    """A value that satisfies a simple JSON schema."""
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        required = schema.get("required", list(props))
        return {k: value_for(props[k], rng, k) for k in props if k in required}
    if kind == "array":
        return [value_for(schema.get("items", {}), rng, name)]
    if kind == "integer":
        return rng.randint(1, 100)
    if kind == "number":
        return round(rng.uniform(0, 100), 2)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return f"{name} {rng.choice(WORDS)}"


def json_text(schema: Mapping[str, Any] | None, rng: random.Random) -> str:
    if not schema:
        return json.dumps({"answer": generated_text(rng, 6)})
    return json.dumps(value_for(schema, rng))
