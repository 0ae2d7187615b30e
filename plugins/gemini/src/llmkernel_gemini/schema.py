"""JSON schemas in the shape Gemini's ``Schema`` object (an OpenAPI 3.0 subset) takes.

``parameters`` and ``responseSchema`` refuse keys outside that subset (a common one
is ``additionalProperties``, which OpenAI's strict mode requires) with a 400. This
keeps the keys Gemini knows, inlines local ``$ref`` definitions, turns
``"type": ["string", "null"]`` into ``nullable`` and ``const`` into a one-value
``enum``. With ``schema_format = "json_schema"`` none of this runs: the schema goes
unchanged to ``parametersJsonSchema``/``responseJsonSchema``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_ALLOWED = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "maxItems",
        "minItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "propertyOrdering",
        "default",
        "items",
        "minimum",
        "maximum",
    }
)
_MAX_DEPTH = 32


def to_openapi(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` that Gemini's ``Schema`` object accepts."""
    definitions: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        found = schema.get(key)
        if isinstance(found, Mapping):
            definitions.update({f"#/{key}/{name}": value for name, value in found.items()})
    result = _convert(schema, definitions, 0)
    return result if isinstance(result, dict) else {}


def _convert(node: Any, definitions: Mapping[str, Any], depth: int) -> Any:
    if not isinstance(node, Mapping):
        return node
    if depth > _MAX_DEPTH:
        return {"type": "object"}  # a recursive schema, cut where Gemini cannot follow
    ref = node.get("$ref")
    if isinstance(ref, str) and ref in definitions:
        merged = {**definitions[ref], **{k: v for k, v in node.items() if k != "$ref"}}
        return _convert(merged, definitions, depth + 1)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "const":
            out.setdefault("enum", [value])
        elif key == "type" and isinstance(value, list):
            kinds = [k for k in value if k != "null"]
            if len(kinds) < len(value):
                out["nullable"] = True
            if kinds:
                out["type"] = kinds[0]
        elif key == "properties" and isinstance(value, Mapping):
            out[key] = {name: _convert(sub, definitions, depth + 1) for name, sub in value.items()}
        elif key == "items":
            out[key] = _convert(value, definitions, depth + 1)
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            options = [_convert(sub, definitions, depth + 1) for sub in value]
            nulls = [o for o in options if isinstance(o, Mapping) and o.get("type") == "null"]
            options = [o for o in options if o not in nulls]
            if nulls:
                out["nullable"] = True
            if len(options) == 1 and isinstance(options[0], Mapping):
                out.update({k: v for k, v in options[0].items() if k not in out})
            elif options:
                out["anyOf"] = options
        elif key in _ALLOWED:
            out[key] = value
    return out
