"""The context-window filter counts the prompt only when a byte a token does not
already fit; the shortcut never lets an over-window request through."""

from __future__ import annotations

import random
from typing import Any

import pytest

from llmkernel import Kernel, RequestContext, hookimpl
from llmkernel.errors import NoProviderError
from llmkernel.provider import ProviderConfig
from llmkernel.testing.scripted import ScriptedProvider
from llmkernel.types import Capabilities, ChatRequest, TokenCount
from llmkernel_routing import plugin as routing_plugin
from llmkernel_routing.state import routing_for, token_ceiling

WINDOW = 400
RESERVE = 50


class Windowed(ScriptedProvider):
    def capabilities(self, model: str) -> Capabilities:
        return Capabilities(context_window=WINDOW)


class WindowedPlugin:
    """Provider type ``windowed`` (a small context window) and the worst tokenizer
    for the shortcut: one token per UTF-8 byte, plus framing, counted for real."""

    __llmkernel_name__ = "windowed"

    def __init__(self) -> None:
        self.counted = 0

    @hookimpl
    def provide_chat(self, config: ProviderConfig) -> Any:
        if config.type != "windowed":
            return None
        return Windowed(ProviderConfig(name=config.name, type=config.type, options={}))

    @hookimpl
    def count_tokens(self, kernel: Any, request: Any, provider_type: str, model: str) -> Any:
        self.counted += 1
        tokens = 3  # the reply's priming
        for message in request.messages:
            tokens += 4  # role and separators
            for part in message.content:
                tokens += len(part.text.encode("utf-8", "surrogatepass"))
        return TokenCount(tokens=tokens, exact=True, method="bytes")


def kernel_with(counter: WindowedPlugin) -> Kernel:
    return Kernel.from_config(
        {
            "providers": {"w": {"type": "windowed"}},
            "plugin": {"routing": {"reserve_output": RESERVE}},
        },
        plugins=[counter, routing_plugin],
        entry_points=False,
    )


TEXTS = ["a", "é", "日本語", "🙂", "naïve café ", "\ud83d", "x y z\n"]


def test_only_requests_that_fit_pass_and_counting_is_skipped_when_the_bound_fits() -> None:
    counter = WindowedPlugin()
    kernel = kernel_with(counter)
    rnd = random.Random(14)
    candidate = kernel.models.resolve("w/m")[0]
    decided = {"passed": 0, "dropped": 0, "skipped_count": 0}
    for _ in range(400):
        messages = [
            {
                "role": rnd.choice(["system", "user", "assistant"]),
                "content": "".join(rnd.choice(TEXTS) for _ in range(rnd.randint(0, 60))),
            }
            for _ in range(rnd.randint(1, 4))
        ]
        max_tokens = rnd.choice([None, 1, 100, 300])
        request = kernel.build_request("w/m", messages, max_tokens=max_tokens)
        output = RESERVE if max_tokens is None else max_tokens
        ctx = RequestContext.new(kernel, "chat", request)
        before = counter.counted
        reasons = routing_for(kernel).drop_reasons(ctx, [candidate])
        if token_ceiling(request) + output <= WINDOW:
            assert counter.counted == before  # settled by the bound: nothing counted
            decided["skipped_count"] += 1
        fits = ctx.input_tokens(candidate) + output <= WINDOW  # the truth, counted
        assert bool(reasons) == (not fits)
        decided["dropped" if reasons else "passed"] += 1
    # the sample has both outcomes, and the shortcut was taken
    assert decided["passed"] and decided["dropped"] and decided["skipped_count"]
    kernel.close()


def test_the_filter_does_not_count_when_the_bound_fits() -> None:
    counter = WindowedPlugin()
    kernel = kernel_with(counter)
    candidate = kernel.models.resolve("w/m")[0]
    short = kernel.build_request("w/m", "hi")
    assert not routing_for(kernel).drop_reasons(
        RequestContext.new(kernel, "chat", short), [candidate]
    )
    assert counter.counted == 0
    long = kernel.build_request("w/m", "é" * 200)  # 400 bytes: the bound says maybe not
    reasons = routing_for(kernel).drop_reasons(
        RequestContext.new(kernel, "chat", long), [candidate]
    )
    assert counter.counted == 1 and reasons
    assert "too small for 407 prompt + 50 output tokens" in reasons[0][1]
    with pytest.raises(NoProviderError):
        kernel.chat("w/m", "é" * 200)
    kernel.close()


def test_the_ceiling_bounds_every_request_shape() -> None:
    kernel = Kernel.from_config({}, entry_points=False)
    request: ChatRequest = kernel.build_request(
        "a/m",
        [
            {"role": "user", "content": [{"type": "text", "text": "look 🙂"}]},
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
            },
        ],
    )
    text_bytes = len("look 🙂".encode())
    assert token_ceiling(request) >= text_bytes + 6400  # an image at its most
    assert token_ceiling(kernel.build_request("a/m", "\ud83d")) >= 3  # a lone surrogate


def test_the_state_of_each_kernel_is_its_own() -> None:
    first = Kernel.from_config({}, plugins=[routing_plugin], entry_points=False)
    second = Kernel.from_config({}, plugins=[routing_plugin], entry_points=False)
    a, b = routing_for(first), routing_for(second)
    assert a is not b
    for _ in range(3):
        assert routing_for(first) is a and routing_for(second) is b
