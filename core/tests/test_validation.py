"""Bad input is refused at the boundary with the project's errors, naming the field
and the value; nothing reaches the provider."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llmkernel import hookimpl
from llmkernel.errors import InvalidRequestError, LLMKernelError, PluginError
from llmkernel.testing.scripted import make_kernel, scripted

BAD_CHATS: list[tuple[dict[str, Any], str]] = [
    ({"temperature": "hot"}, "temperature.*'hot'"),
    ({"temperature": 3}, "temperature.*between 0 and 2"),
    ({"max_tokens": -1}, "max_tokens.*-1"),
    ({"max_tokens": "10"}, "max_tokens.*'10'"),
    ({"max_tokens": 1.5}, "max_tokens.*1.5"),
    ({"max_tokens": True}, "max_tokens.*True"),
    ({"top_p": 2}, "top_p.*between 0 and 1"),
    ({"user": 5}, "user.*5"),
    ({"stop": 5}, "stop.*5"),
    ({"stop": ["ok", 3]}, "stop"),
    ({"model": 5}, "model.*5"),
    ({"model": ""}, "model.*''"),
    ({"messages": None}, "messages.*None"),
    ({"messages": 5}, "messages.*5"),
    ({"messages": {"role": "user", "content": "hi"}}, "messages.*one dict"),
    ({"messages": []}, "messages.*at least one"),
    ({"tempreature": 0.2}, "tempreature.*did you mean 'temperature'"),
    ({"max_token": 5}, "max_token.*did you mean 'max_tokens'"),
    ({"tools": "x"}, "tools.*'x'"),
    (
        {"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "g"},
        "tool_choice",
    ),
    (
        {
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": {"type": "function", "function": {"name": "g"}},
        },
        "tool_choice.*'g', not offered",
    ),
    ({"tool_choice": "required"}, "tool_choice.*no tools"),
    ({"metadata": {"tenant": 5}}, "metadata"),
    ({"options": "x"}, "options.*'x'"),
    ({"timeout": -1}, "timeout.*-1"),
]


@pytest.mark.parametrize(("kwargs", "match"), BAD_CHATS, ids=lambda v: str(v)[:40])
def test_bad_chat_input_is_refused_naming_the_field(kwargs: dict[str, Any], match: str) -> None:
    call: dict[str, Any] = {"model": "a/m1", "messages": "hi", **kwargs}
    with make_kernel(["never"]) as kernel:
        with pytest.raises(InvalidRequestError, match=match):
            kernel.chat(**call)
        with pytest.raises(InvalidRequestError, match=match):
            kernel.stream(**call)
        assert scripted(kernel, "a").requests == []


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("a/m1", None), {}, "input.*None"),
        (("a/m1", []), {}, "input.*at least one"),
        (("a/m1", ["ok", 5]), {}, r"input\[1\].*5"),
        (("a/m1", "x"), {"dimensions": -1}, "dimensions.*-1"),
        (("a/m1", "x"), {"dimensions": "8"}, "dimensions.*'8'"),
        (("", "x"), {}, "model"),
        ((5, "x"), {}, "model.*5"),
    ],
)
def test_bad_embedding_input_is_refused(args: tuple[Any, ...], kwargs: Any, match: str) -> None:
    with make_kernel(["never"]) as kernel:
        with pytest.raises(InvalidRequestError, match=match):
            kernel.embed(*args, **kwargs)
        assert scripted(kernel, "a").requests == []


def test_provider_extras_pass_through_explicitly() -> None:
    with make_kernel(["ok"]) as kernel:
        kernel.chat(
            "a/m1", "hi", options={"parallel_tool_calls": False}, seed=7, metadata={"key": "k"}
        )
        sent = scripted(kernel, "a").requests[0]
    assert sent.options == {"parallel_tool_calls": False, "seed": 7}
    assert "options" not in sent.options and "metadata" not in sent.options


def test_an_empty_model_is_an_error_not_the_default() -> None:
    with make_kernel(["ok"]) as kernel, pytest.raises(InvalidRequestError, match="model"):
        kernel.chat(model="", messages="hi")


def test_a_strategy_returning_the_wrong_type_names_the_plugin() -> None:
    class Plugin:
        __llmkernel_name__ = "sloppy"

        @hookimpl
        def select_provider(self, candidates: Any) -> Any:
            return {"first": candidates[0]}

    expected = r"plugin 'sloppy' \(select_provider\) returned dict"
    with (
        make_kernel(["ok"], plugins=(Plugin(),)) as kernel,
        pytest.raises(PluginError, match=expected),
    ):
        kernel.chat(model="a/m1", messages="hi")


def test_a_provider_plugin_returning_the_wrong_type_names_it() -> None:
    from llmkernel.errors import PluginError as Error

    class Plugin:
        __llmkernel_name__ = "wrongtype"

        @hookimpl(tryfirst=True)
        def provide_chat(self, config: Any) -> Any:
            return "not a provider" if config.name == "a" else None

    with pytest.raises(Error, match=r"plugin 'wrongtype' returned str from provide_chat"):
        make_kernel(["ok"], plugins=(Plugin(),))


def test_a_kernel_used_from_two_event_loops_says_so() -> None:
    kernel = make_kernel(["one", "two"])

    async def call() -> str:
        return (await kernel.achat(model="a/m1", messages="hi")).text

    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(call()) == "one"
        other = asyncio.new_event_loop()
        try:
            with pytest.raises(LLMKernelError, match="bound to the event loop it first ran on"):
                other.run_until_complete(call())
        finally:
            other.close()
    finally:
        loop.run_until_complete(kernel.aclose())
        loop.close()
    # once its loop is closed, a kernel may move on to a new one
    assert asyncio.run(call()) == "two"


def test_a_file_part_in_openais_shape_or_the_kernels() -> None:
    from llmkernel.types import FilePart

    kernel = make_kernel(["ok"])
    openai_shape = {
        "type": "file",
        "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"},
    }
    native = {"type": "file", "media_type": "application/pdf", "url": "https://x.test/b.pdf"}
    request = kernel.build_request(
        "a/m1",
        [{"role": "user", "content": [{"type": "text", "text": "hi"}, openai_shape, native]}],
    )
    assert request.messages[0].content[1:] == (
        FilePart(media_type="application/pdf", data="JVBERi0=", filename="a.pdf"),
        FilePart(media_type="application/pdf", url="https://x.test/b.pdf"),
    )
    for bad, field in (
        ({"type": "file", "file": {"file_data": "JVBERi0="}}, "file.file_data"),
        ({"type": "file", "data": "JVBERi0="}, "media_type"),
        ({"type": "file", "media_type": "application/pdf"}, "exactly one of url= or data="),
    ):
        with pytest.raises(InvalidRequestError, match=field.replace(".", r"\.")):
            kernel.build_request("a/m1", [{"role": "user", "content": [bad]}])
    kernel.close()
