"""A scripted provider plugin for testing the pipeline and plugins that sit around it.

It registers like any plugin (through ``provide_chat``), so tests exercise the real
pipeline end to end; only the provider's answers are scripted::

    kernel = make_kernel(["first reply", RateLimitError("slow down", retry_after=1)])
    kernel.chat(model="a/m1", messages="hi")
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import attrs

from llmkernel import Kernel, hookimpl
from llmkernel.errors import ProviderError
from llmkernel.provider import Provider, ProviderConfig
from llmkernel.types import (
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    FinishEvent,
    Message,
    Response,
    StreamEvent,
    TextDelta,
    TextPart,
    Usage,
    UsageEvent,
)


@attrs.frozen
class Slow:
    """A script item that waits ``seconds`` and then answers with ``then``."""

    seconds: float
    then: Any


class ScriptedProvider(Provider):
    """Answers from a script: a str is a reply, an exception is raised, a list of
    str/event/exception items is a stream (an exception mid-list fails it there, a
    :class:`Slow` mid-list pauses it)."""

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self.script: list[Any] = list(config.options.get("script", []))
        self.requests: list[ChatRequest] = []
        self.closed = False

    async def _next(self) -> Any:
        item = self.script.pop(0) if self.script else "ok"
        if isinstance(item, Slow):
            await asyncio.sleep(item.seconds)
            item = item.then
        if isinstance(item, BaseException):
            raise item
        return item

    async def chat(self, request: ChatRequest) -> Response:
        self.requests.append(request)
        item = await self._next()
        text = item if isinstance(item, str) else "".join(p for p in item if isinstance(p, str))
        return Response(
            message=Message(role="assistant", content=(TextPart(text=text),)),
            usage=Usage(input_tokens=10, output_tokens=len(text.split())),
            model=request.model,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        self.requests.append(request)
        item = await self._next()
        pieces = [item] if isinstance(item, str) else item
        for item in pieces:
            piece = item
            if isinstance(item, Slow):  # a pause mid-stream, then the piece
                await asyncio.sleep(item.seconds)
                piece = item.then
            if isinstance(piece, BaseException):
                raise piece
            yield piece if not isinstance(piece, str) else TextDelta(text=piece)
        yield UsageEvent(usage=Usage(input_tokens=10, output_tokens=len(pieces)))
        yield FinishEvent(finish_reason="stop")

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        await self._next()
        return EmbeddingResponse(
            vectors=[[float(len(t))] for t in request.inputs],
            usage=Usage(input_tokens=len(request.inputs)),
        )

    def declared_models(self) -> list[str]:
        return ["m1", "m2"]

    async def aclose(self) -> None:
        self.closed = True


class ScriptedPlugin:
    """Serves provider type ``scripted``."""

    __llmkernel_name__ = "scripted"

    @hookimpl
    def provide_chat(self, config: ProviderConfig) -> Provider | None:
        if config.type != "scripted":
            return None
        options = dict(config.options)
        script = options.pop("script", [])
        unknown = set(options) - {"models"}
        if unknown:
            from llmkernel.errors import ConfigError

            raise ConfigError(f"unknown key {sorted(unknown)[0]!r} in {config.where}")
        return ScriptedProvider(
            ProviderConfig(name=config.name, type=config.type, options={"script": script})
        )


def make_kernel(
    *scripts: list[Any],
    retry: dict[str, Any] | None = None,
    plugins: tuple[object, ...] = (),
    **extra: Any,
) -> Kernel:
    """A kernel with providers a, b, ... each scripted; alias ``group`` = all of them."""
    names = [chr(ord("a") + i) for i in range(len(scripts))]
    config: dict[str, Any] = {
        "providers": {
            n: {"type": "scripted", "script": s} for n, s in zip(names, scripts, strict=True)
        },
        "models": {"group": [f"{n}/m1" for n in names]},
        "retry": {
            "attempts": 3,
            "initial_wait": 0.0,
            "max_wait": 0.0,
            "jitter": 0.0,
            **(retry or {}),
        },
        **extra,
    }
    return Kernel.from_config(config, plugins=[ScriptedPlugin(), *plugins], entry_points=False)


def scripted(kernel: Kernel, name: str) -> ScriptedProvider:
    provider = kernel.provider(name)
    assert isinstance(provider, ScriptedProvider)
    return provider


def err(cls: type[ProviderError], **kw: Any) -> ProviderError:
    return cls(f"simulated {cls.__name__}", **kw)
