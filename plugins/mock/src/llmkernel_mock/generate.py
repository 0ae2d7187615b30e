"""Deterministic simulated content: text, tool arguments, JSON for a schema."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from typing import Any

from llmkernel.types import ChatRequest, ImagePart, Message, TextPart

WORDS = [
    "the",
    "kernel",
    "routes",
    "each",
    "request",
    "to",
    "a",
    "provider",
    "and",
    "returns",
    "a",
    "normalized",
    "answer",
    "with",
    "usage",
    "cost",
    "latency",
    "and",
    "attempts",
    "while",
    "retries",
    "fallbacks",
    "caches",
    "and",
    "budgets",
    "stay",
    "out",
    "of",
    "the",
    "way",
    "so",
    "applications",
    "switch",
    "models",
    "by",
    "changing",
    "one",
    "string",
    "simulated",
    "tokens",
    "arrive",
    "steadily",
    "offline",
    "deterministic",
    "reply",
]


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
    picked = [rng.choice(WORDS) for _ in range(max(1, words))]
    picked[0] = picked[0].capitalize()
    return " ".join(picked) + "."


def estimate_input_tokens(request: ChatRequest) -> int:
    chars = 0
    for message in request.messages:
        for part in message.content:
            if isinstance(part, TextPart):
                chars += len(part.text)
            elif isinstance(part, ImagePart):
                chars += 340
        chars += sum(len(c.arguments_json) for c in message.tool_calls)
    return max(1, -(-chars // 4) + 4 * len(request.messages))


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
