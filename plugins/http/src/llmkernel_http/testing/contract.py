"""The provider contract: one suite every provider package runs against its fake server.

Subclass :class:`ProviderContract` in a provider's tests, set the class attributes,
and implement the ``script_*`` methods, which teach the fake server to answer in the
provider's exact wire format. The tests then drive a real :class:`~llmkernel.Kernel`
over HTTP on 127.0.0.1 and check the normalized results::

    class TestOpenAIContract(ProviderContract):
        plugin = llmkernel_openai.plugin
        provider_type = "openai"
        model = "gpt-4o-mini"
        def options(self, server): return {"base_url": server.url + "/v1"}
        def script_text(self, server, text, usage, *, stream): ...

Scenarios a provider cannot express (no embeddings, say) are skipped by leaving the
matching ``supports_*`` flag False.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from llmkernel import errors
from llmkernel.kernel import Kernel
from llmkernel.types import FinishEvent, ToolCall, Usage, UsageEvent
from llmkernel_http import REDACTED
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer, Gate, RecordedRequest

ERROR_KINDS: dict[str, type[errors.ProviderError]] = {
    "authentication": errors.AuthenticationError,
    "permission": errors.PermissionDeniedError,
    "not_found": errors.ModelNotFoundError,
    "rate_limit": errors.RateLimitError,
    "quota": errors.QuotaExceededError,
    "invalid_request": errors.InvalidRequestError,
    "context_window": errors.ContextWindowExceededError,
    "server": errors.ServerError,
    "overloaded": errors.OverloadedError,
}

#: rate-limit headers the fake server adds to every answer in the headers tests
RATE_LIMIT_HEADERS = {
    "x-ratelimit-limit-requests": "10000",
    "x-ratelimit-remaining-requests": "9999",
    "x-ratelimit-reset-tokens": "6m0s",
    "anthropic-ratelimit-requests-remaining": "49",
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


class ProviderContract:
    """Subclass and fill in; see the module docstring."""

    plugin: ClassVar[Any]
    provider_type: ClassVar[str]
    model: ClassVar[str]
    api_key_env: ClassVar[str] = "LLMKERNEL_CONTRACT_KEY"
    api_key: ClassVar[str] = "sk-contract-SECRET-4f9a8b7c6d5e"
    #: error kinds this provider has a wire shape for (default: all of ERROR_KINDS)
    error_kinds: ClassVar[tuple[str, ...]] = tuple(ERROR_KINDS)
    supports_embeddings: ClassVar[bool] = False
    supports_models: ClassVar[bool] = True

    # ------------------------------------------------------------ to implement

    def options(self, server: FakeServer) -> dict[str, Any]:
        """Provider options pointing at ``server`` (at least ``base_url``); the
        contract adds ``api_key_env``."""
        raise NotImplementedError

    def usage_sample(self) -> Usage:
        """A usage the provider can express; override to exercise cache and reasoning
        buckets."""
        return Usage(input_tokens=12, output_tokens=7)

    def script_text(
        self, server: FakeServer, text: str, usage: Usage, *, stream: bool, gate: Gate | None = None
    ) -> None:
        """Answer the next chat with ``text`` and ``usage``, finish reason stop.

        When streaming, send the text in several pieces (at least two text events)
        and, if ``gate`` is given, wait at it after the first text piece.
        """
        raise NotImplementedError

    def script_tool_calls(self, server: FakeServer, calls: list[ToolCall], *, stream: bool) -> None:
        """Answer with these parallel tool calls (streamed as argument fragments)."""
        raise NotImplementedError

    def script_error(
        self, server: FakeServer, kind: str, *, stream: bool, retry_after: float | None = None
    ) -> None:
        """Answer with the provider's error status and body for ``kind``."""
        raise NotImplementedError

    def script_cut_stream(self, server: FakeServer, *, reset: bool) -> None:
        """Stream a text piece or two, then cut the connection (``reset``: TCP reset;
        else close without the stream's end)."""
        raise NotImplementedError

    def script_malformed(self, server: FakeServer, *, stream: bool) -> None:
        """Answer 200 with a body that is not the provider's format (not JSON)."""
        raise NotImplementedError

    def script_models(self, server: FakeServer, ids: list[str]) -> None:
        raise NotImplementedError

    def script_embeddings(self, server: FakeServer, vectors: list[list[float]]) -> None:
        raise NotImplementedError

    def check_auth(self, request: RecordedRequest, api_key: str) -> None:
        """Assert the request carried ``api_key`` the way the provider wants it."""
        raise NotImplementedError

    def check_tool_result_request(self, body: dict[str, Any]) -> None:
        """Assert the request body carried the assistant's tool call ``call_1``
        (get_weather, city Paris) and its result ``"18C and sunny"`` in the
        provider's own shape."""
        raise NotImplementedError

    # ------------------------------------------------------------ fixtures

    @pytest.fixture
    def server(self) -> Iterator[FakeServer]:
        with FakeServer() as server:
            yield server

    @pytest.fixture
    def kernel(self, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Kernel]:
        monkeypatch.setenv(self.api_key_env, self.api_key)
        yield self.make_kernel(server)

    def make_kernel(self, server: FakeServer, **retry: Any) -> Kernel:
        options = {
            "type": self.provider_type,
            "api_key_env": self.api_key_env,
            **self.options(server),
        }
        config = {
            "providers": {"p": options},
            "retry": {"attempts": 1, "initial_wait": 0.0, "max_wait": 0.0, **retry},
        }
        return Kernel.from_config(config, plugins=[self.plugin], entry_points=False)

    @property
    def qualified_model(self) -> str:
        return f"p/{self.model}"

    # ------------------------------------------------------------ the contract

    async def test_chat_text(self, kernel: Kernel, server: FakeServer) -> None:
        usage = self.usage_sample()
        self.script_text(server, "Hello there!", usage, stream=False)
        async with kernel:
            response = await kernel.achat(
                model=self.qualified_model, messages=[{"role": "user", "content": "hi"}]
            )
        assert response.text == "Hello there!"
        assert response.finish_reason == "stop"
        assert response.usage == usage
        assert response.usage.total_tokens == usage.input_tokens + usage.output_tokens
        assert response.provider == "p"
        assert response.tool_calls == ()
        self.check_auth(server.requests[-1], self.api_key)

    async def test_stream_text(self, kernel: Kernel, server: FakeServer) -> None:
        usage = self.usage_sample()
        self.script_text(server, "Hello there, friend!", usage, stream=True)
        async with kernel:
            stream = kernel.astream(
                model=self.qualified_model, messages=[{"role": "user", "content": "hi"}]
            )
            events = [event async for event in stream]
        texts = [e.text for e in events if e.type == "text"]
        assert len(texts) >= 2, "the text should arrive in several deltas"
        assert "".join(texts) == "Hello there, friend!"
        assert [e.type for e in events][-2:] == ["usage", "finish"]
        assert isinstance(events[-2], UsageEvent) and events[-2].usage == usage
        assert isinstance(events[-1], FinishEvent) and events[-1].finish_reason == "stop"
        assert stream.response is not None
        assert stream.response.text == "Hello there, friend!"
        assert stream.response.usage == usage
        self.check_auth(server.requests[-1], self.api_key)

    async def test_stream_yields_before_the_body_ends(
        self, kernel: Kernel, server: FakeServer
    ) -> None:
        gate = Gate()
        self.script_text(server, "first second", self.usage_sample(), stream=True, gate=gate)
        async with kernel:
            stream = kernel.astream(
                model=self.qualified_model, messages=[{"role": "user", "content": "hi"}]
            )
            first = None
            async for event in stream:
                if event.type == "text":
                    first = event
                    break
            assert first is not None and first.text, "a text delta arrived before the gate"
            gate.open()
            async for _ in stream:
                pass
        assert stream.response is not None
        assert stream.response.text == "first second"

    @pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
    async def test_parallel_tool_calls(
        self, kernel: Kernel, server: FakeServer, stream: bool
    ) -> None:
        calls = [
            ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"}),
            ToolCall(id="call_2", name="get_weather", arguments={"city": "Tokyo, Japan"}),
        ]
        self.script_tool_calls(server, calls, stream=stream)
        messages = [{"role": "user", "content": "Weather in Paris and Tokyo?"}]
        async with kernel:
            if stream:
                handle = kernel.astream(
                    model=self.qualified_model, messages=messages, tools=[WEATHER_TOOL]
                )
                events = [e async for e in handle]
                assert any(e.type == "tool_call" for e in events)
                response = handle.response
                assert response is not None
            else:
                response = await kernel.achat(
                    model=self.qualified_model, messages=messages, tools=[WEATHER_TOOL]
                )
        assert response.finish_reason == "tool_calls"
        assert [(c.name, dict(c.arguments)) for c in response.tool_calls] == [
            ("get_weather", {"city": "Paris"}),
            ("get_weather", {"city": "Tokyo, Japan"}),
        ]
        assert all(c.id for c in response.tool_calls)
        sent = server.requests[-1].json()
        assert "get_weather" in str(sent), "the tool spec was sent"

    async def test_tool_result_round_trip(self, kernel: Kernel, server: FakeServer) -> None:
        self.script_text(server, "It is 18C in Paris.", self.usage_sample(), stream=False)
        messages: list[dict[str, Any]] = [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"},
        ]
        async with kernel:
            response = await kernel.achat(
                model=self.qualified_model, messages=messages, tools=[WEATHER_TOOL]
            )
        assert response.text == "It is 18C in Paris."
        self.check_tool_result_request(server.requests[-1].json())

    @pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
    @pytest.mark.parametrize("kind", list(ERROR_KINDS))
    async def test_error_kinds(
        self, kernel: Kernel, server: FakeServer, kind: str, stream: bool
    ) -> None:
        if kind not in self.error_kinds:
            pytest.skip(f"{self.provider_type} has no {kind} error shape")
        self.script_error(server, kind, stream=stream)
        messages = [{"role": "user", "content": "hi"}]
        async with kernel:
            with pytest.raises(errors.ProviderError) as info:
                if stream:
                    async for _ in kernel.astream(model=self.qualified_model, messages=messages):
                        pass
                else:
                    await kernel.achat(model=self.qualified_model, messages=messages)
        error = info.value
        assert type(error) is ERROR_KINDS[kind], f"{kind}: got {type(error).__name__}: {error}"
        assert error.provider == "p"
        assert error.status is not None
        assert self.api_key not in str(error) and self.api_key not in repr(error)

    async def test_retry_after_is_honoured(
        self, server: FakeServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv(self.api_key_env, self.api_key)
        kernel = self.make_kernel(server, attempts=3)
        self.script_error(server, "rate_limit", stream=False, retry_after=0.4)
        self.script_text(server, "after the wait", self.usage_sample(), stream=False)
        started = time.monotonic()
        async with kernel:
            response = await kernel.achat(
                model=self.qualified_model, messages=[{"role": "user", "content": "hi"}]
            )
        assert response.text == "after the wait"
        assert response.attempts == 2
        assert time.monotonic() - started >= 0.35, "the Retry-After wait was not honoured"

    @pytest.mark.parametrize("reset", [False, True], ids=["cut", "reset"])
    async def test_stream_cut_off_midway(
        self, kernel: Kernel, server: FakeServer, reset: bool
    ) -> None:
        self.script_cut_stream(server, reset=reset)
        events = []
        async with kernel:
            with pytest.raises(errors.ProviderError) as info:
                async for event in kernel.astream(
                    model=self.qualified_model, messages=[{"role": "user", "content": "hi"}]
                ):
                    events.append(event)
        assert any(e.type == "text" for e in events), "text arrived before the cut"
        assert events[-1].type == "error", "the stream ends with an error event"
        assert info.value.retryable
        assert info.value.provider == "p"

    @pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
    async def test_malformed_response(
        self, kernel: Kernel, server: FakeServer, stream: bool
    ) -> None:
        self.script_malformed(server, stream=stream)
        async with kernel:
            with pytest.raises(errors.ProviderError) as info:
                if stream:
                    async for _ in kernel.astream(
                        model=self.qualified_model, messages=[{"role": "user", "content": "hi"}]
                    ):
                        pass
                else:
                    await kernel.achat(
                        model=self.qualified_model, messages=[{"role": "user", "content": "hi"}]
                    )
        assert isinstance(info.value, errors.MalformedResponseError | errors.NetworkError)
        assert info.value.provider == "p"
        assert not isinstance(info.value.__cause__, KeyError)

    async def test_connection_refused_is_a_network_error(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv(self.api_key_env, self.api_key)
        server = FakeServer()
        kernel = self.make_kernel(server)
        server.close()  # nothing listens on that port any more
        async with kernel:
            with pytest.raises(errors.NetworkError) as info:
                await kernel.achat(
                    model=self.qualified_model, messages=[{"role": "user", "content": "hi"}]
                )
        assert info.value.provider == "p"

    async def test_missing_key_names_the_variable(
        self, server: FakeServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv(self.api_key_env, raising=False)
        kernel = self.make_kernel(server)
        self.script_text(server, "never", self.usage_sample(), stream=False)
        async with kernel:
            with pytest.raises(errors.AuthenticationError, match=self.api_key_env):
                await kernel.achat(
                    model=self.qualified_model, messages=[{"role": "user", "content": "hi"}]
                )

    async def test_unknown_option_is_refused(self, server: FakeServer) -> None:
        config = {
            "providers": {
                "p": {"type": self.provider_type, **self.options(server), "base_urll": "x"}
            }
        }
        with pytest.raises(errors.ConfigError, match="base_urll"):
            kernel = Kernel.from_config(config, plugins=[self.plugin], entry_points=False)
            kernel.provider("p")

    async def test_list_models(self, kernel: Kernel, server: FakeServer) -> None:
        if not self.supports_models:
            pytest.skip("no model listing")
        self.script_models(server, ["model-a", "model-b"])
        async with kernel:
            models = await kernel.provider("p").list_models()
        assert [m.id for m in models] == ["model-a", "model-b"]
        self.check_auth(server.requests[-1], self.api_key)

    async def test_health(self, kernel: Kernel, server: FakeServer) -> None:
        if not self.supports_models:
            pytest.skip("no model listing")
        self.script_models(server, ["model-a"])
        async with kernel:
            assert (await kernel.provider("p").health()).ok

    async def test_embeddings(self, kernel: Kernel, server: FakeServer) -> None:
        if not self.supports_embeddings:
            pytest.skip("no embeddings")
        vectors = [[0.25, -0.5, 1.0], [0.0, 0.125, -1.0]]
        self.script_embeddings(server, vectors)
        async with kernel:
            result = await kernel.aembed(model=self.qualified_model, input=["one", "two"])
        assert result.vectors == vectors
        assert result.provider == "p"

    def test_secret_not_in_reprs(self, kernel: Kernel) -> None:
        provider = kernel.provider("p")
        assert self.api_key not in repr(provider)
        assert self.api_key not in repr(kernel)
        assert os.environ[self.api_key_env] == self.api_key

    # ------------------------------------------------------------ headers

    async def test_headers_on_response_stream_and_error(
        self, kernel: Kernel, server: FakeServer
    ) -> None:
        server.headers = dict(RATE_LIMIT_HEADERS)
        messages = [{"role": "user", "content": "hi"}]
        self.script_text(server, "with headers", self.usage_sample(), stream=False)
        async with kernel:
            response = await kernel.achat(model=self.qualified_model, messages=messages)
            assert response.headers["x-ratelimit-remaining-requests"] == "9999"
            assert all(name == name.lower() for name in response.headers)
            self.script_text(server, "with headers too", self.usage_sample(), stream=True)
            stream = kernel.astream(model=self.qualified_model, messages=messages)
            events = [event async for event in stream]
            assert events and stream.response is not None
            assert stream.response.headers["x-ratelimit-reset-tokens"] == "6m0s"
            self.script_error(server, "rate_limit", stream=False)
            with pytest.raises(errors.ProviderError) as info:
                await kernel.achat(model=self.qualified_model, messages=messages)
        assert info.value.headers["x-ratelimit-limit-requests"] == "10000"

    async def test_embedding_headers(self, kernel: Kernel, server: FakeServer) -> None:
        if not self.supports_embeddings:
            pytest.skip("no embeddings")
        server.headers = dict(RATE_LIMIT_HEADERS)
        self.script_embeddings(server, [[0.5, 0.25], [1.0, 0.0]])
        async with kernel:
            result = await kernel.aembed(model=self.qualified_model, input=["one", "two"])
        assert result.headers["anthropic-ratelimit-requests-remaining"] == "49"

    # ------------------------------------------------------------ secrets

    @staticmethod
    def _echo_auth(request: RecordedRequest) -> FakeResponse:
        """A server that quotes every request header back in its error body (and a
        response header), as some proxies and misconfigured servers do."""
        echoed = "; ".join(f"{name}: {value}" for name, value in request.headers.items())
        body = {
            "error": {
                "message": f"invalid credentials ({echoed})",
                "type": "authentication_error",
                "code": echoed[:200],
            }
        }
        return FakeResponse(
            status=401,
            headers={"content-type": "application/json", "x-echo": echoed[:200]},
            body=json.dumps(body).encode(),
        )

    @pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
    async def test_secret_echoed_in_an_error_body_is_redacted(
        self, kernel: Kernel, server: FakeServer, stream: bool
    ) -> None:
        server.default = self._echo_auth
        messages = [{"role": "user", "content": "hi"}]
        async with kernel:
            with pytest.raises(errors.ProviderError) as info:
                if stream:
                    async for _ in kernel.astream(model=self.qualified_model, messages=messages):
                        pass
                else:
                    await kernel.achat(model=self.qualified_model, messages=messages)
        error = info.value
        assert server.requests, "the request reached the server"
        assert any(self.api_key in v for v in server.requests[-1].headers.values())
        for text in (str(error), repr(error), error.message, error.code or ""):
            assert self.api_key not in text, text
        assert all(self.api_key not in value for value in error.headers.values())
        assert REDACTED in str(error)
        assert self.api_key not in repr(vars(kernel.provider("p")))

    async def test_secret_echoed_in_health_and_model_list_is_redacted(
        self, kernel: Kernel, server: FakeServer
    ) -> None:
        if not self.supports_models:
            pytest.skip("no model listing")
        server.default = self._echo_auth
        async with kernel:
            provider = kernel.provider("p")
            health = await provider.health()
            with pytest.raises(errors.ProviderError) as info:
                await provider.list_models()
        assert not health.ok and self.api_key not in health.detail
        assert self.api_key not in str(info.value)

    # ------------------------------------------------------------ concurrency

    async def test_many_concurrent_calls(self, kernel: Kernel, server: FakeServer) -> None:
        """200 chats and streams at once through one provider instance: every answer
        complete and right (a correctness check; speed is in tests/benchmarks)."""
        usage = self.usage_sample()
        self.script_text(server, "same answer", usage, stream=False)
        messages = [{"role": "user", "content": "hi"}]

        async def chat() -> str:
            return (await kernel.achat(model=self.qualified_model, messages=messages)).text

        async with kernel:
            texts = await asyncio.gather(*(chat() for _ in range(200)))
            assert texts == ["same answer"] * 200
            self.script_text(server, "same stream", usage, stream=True)

            async def stream() -> str:
                handle = kernel.astream(model=self.qualified_model, messages=messages)
                return "".join([e.text async for e in handle if e.type == "text"])

            streamed = await asyncio.gather(*(stream() for _ in range(200)))
        assert streamed == ["same stream"] * 200

    # ------------------------------------------------------------ model listing

    async def test_list_models_through_the_kernel(self, kernel: Kernel, server: FakeServer) -> None:
        if not self.supports_models:
            pytest.skip("no model listing")
        if not hasattr(kernel, "alist_models"):
            pytest.skip("Kernel.alist_models is not in this kernel yet")
        self.script_models(server, ["model-a", "model-b"])
        async with kernel:
            models = await kernel.alist_models(provider="p")
        assert [m.id for m in models] == ["model-a", "model-b"]

    def test_list_models_sync(self, kernel: Kernel, server: FakeServer) -> None:
        if not self.supports_models:
            pytest.skip("no model listing")
        if not hasattr(kernel, "list_models"):
            pytest.skip("Kernel.list_models is not in this kernel yet")
        self.script_models(server, ["model-a", "model-b"])
        with kernel:
            models = kernel.list_models(provider="p")
        assert [m.id for m in models] == ["model-a", "model-b"]
