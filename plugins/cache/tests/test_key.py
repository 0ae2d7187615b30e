"""The key changes with every answer-changing parameter, and only with those."""

from __future__ import annotations

from typing import Any

import pytest

from llmkernel import Kernel
from llmkernel.types import ChatRequest
from llmkernel_cache.key import canonical, is_secret_name, namespace_for, request_key

BASE: dict[str, Any] = {
    "model": "openai/gpt-4o",
    "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
}


def build(**changes: Any) -> ChatRequest:
    kernel = Kernel.from_config({}, entry_points=False)
    args = {**BASE, **changes}
    return kernel.build_request(args.pop("model"), args.pop("messages"), **args)


def key(request: ChatRequest, namespace: str = "default") -> str:
    return request_key(request, namespace)


TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "r",
        "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
    },
}

CHANGES: list[tuple[str, dict[str, Any]]] = [
    ("model", {"model": "openai/gpt-4o-mini"}),
    ("message text", {"messages": [{"role": "user", "content": "hello"}]}),
    (
        "message role",
        {"messages": [{"role": "user", "content": "be brief"}, {"role": "user", "content": "hi"}]},
    ),
    (
        "message order",
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "system", "content": "be brief"},
            ]
        },
    ),
    (
        "image",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "hi"},
                        {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                    ],
                }
            ]
        },
    ),
    ("tools", {"tools": [TOOL]}),
    ("tool choice", {"tools": [TOOL], "tool_choice": "required"}),
    ("response format", {"response_format": SCHEMA}),
    ("json object", {"response_format": {"type": "json_object"}}),
    ("temperature", {"temperature": 0.5}),
    ("top_p", {"top_p": 0.9}),
    ("max tokens", {"max_tokens": 100}),
    ("stop", {"stop": ["\n"]}),
    ("seed", {"seed": 7}),
    ("reasoning effort", {"reasoning": "high"}),
    ("reasoning budget", {"reasoning": {"budget_tokens": 2048}}),
    ("provider option", {"frequency_penalty": 0.5}),
]


@pytest.mark.parametrize(("what", "change"), CHANGES, ids=[c[0] for c in CHANGES])
def test_every_answer_changing_parameter_changes_the_key(what: str, change: dict[str, Any]) -> None:
    assert key(build(**change)) != key(build())


def test_each_change_gives_a_distinct_key() -> None:
    keys = {key(build(**change)) for _, change in CHANGES}
    assert len(keys) == len(CHANGES)


SAME: list[tuple[str, dict[str, Any]]] = [
    ("user", {"user": "end-user-42"}),
    ("metadata key", {"metadata": {"key": "k-1", "app": "x"}}),
    ("api key option", {"api_key": "sk-secret"}),
    ("extra headers", {"extra_headers": {"Authorization": "Bearer sk-x"}}),
    ("cache off", {"cache": False}),
    ("cache ttl", {"cache_ttl": 5}),
]


@pytest.mark.parametrize(("what", "change"), SAME, ids=[c[0] for c in SAME])
def test_what_does_not_change_the_answer_keeps_the_key(what: str, change: dict[str, Any]) -> None:
    assert key(build(**change)) == key(build())


def test_integer_and_float_temperature_are_the_same() -> None:
    assert key(build(temperature=0)) == key(build(temperature=0.0))


def test_option_order_does_not_matter_but_schema_property_order_does() -> None:
    assert key(build(seed=1, frequency_penalty=0.1)) == key(build(frequency_penalty=0.1, seed=1))
    ab = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}
    ba = {"type": "object", "properties": {"b": {"type": "string"}, "a": {"type": "string"}}}
    fmt = lambda s: {"type": "json_schema", "json_schema": {"name": "r", "schema": s}}  # noqa: E731
    assert key(build(response_format=fmt(ab))) != key(build(response_format=fmt(ba)))


def test_no_secret_in_the_canonical_form() -> None:
    request = build(api_key="sk-secret-123", extra_headers={"Authorization": "Bearer sk-zz"})
    text = canonical(request)
    assert "sk-secret-123" not in text and "sk-zz" not in text


@pytest.mark.parametrize(
    "name", ["api_key", "x-api-key", "extra_headers", "headers", "secret", "aws_secret", "key"]
)
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["max_completion_tokens", "seed", "top_k", "logit_bias"])
def test_not_secret_names(name: str) -> None:
    assert not is_secret_name(name)


def test_tenants_get_their_own_namespace_and_key() -> None:
    a = build(metadata={"tenant": "a"})
    b = build(metadata={"tenant": "b"})
    assert namespace_for(a, "tenant") == "a" and namespace_for(b, "tenant") == "b"
    assert key(a, namespace_for(a, "tenant")) != key(b, namespace_for(b, "tenant"))
    assert namespace_for(build(), "tenant") == "default"
    assert namespace_for(a, "shared") == namespace_for(b, "shared") == "shared"
    assert namespace_for(build(cache_namespace="x", metadata={"tenant": "a"}), "tenant") == "x"


def _generic(request: ChatRequest) -> str:
    """The canonical form written out in full through json: what the key was
    before the direct writer for plain requests, so keys on disk stay valid."""
    import json

    messages = [
        [m.role, [["t", p.text] for p in m.content], [], None, None] for m in request.messages
    ]
    t, p = request.temperature, request.top_p
    data = [
        request.model,
        messages,
        [],
        None,
        None,
        None if t is None else float(t),
        None if p is None else float(p),
        request.max_tokens,
        list(request.stop),
        None,
        {},
    ]
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"messages": [{"role": "user", "content": 'quote " back \\ new\nline é 日本 \u2028'}]},
        {"messages": [{"role": "user", "content": "control \x00\x1f and a lone \ud83d"}]},
        {"model": "ünï/cödé"},
        {"temperature": 0, "top_p": 1, "max_tokens": 7},
        {"temperature": 1e-7, "top_p": 0.95},
        {"stop": ["\n", "END", ""]},
        {"cache_ttl": 5, "api_key": "sk-x"},  # not in the key: still the plain form
    ],
)
def test_plain_requests_keep_the_generic_canonical_form(change: dict[str, Any]) -> None:
    request = build(**change)
    assert canonical(request) == _generic(request)
