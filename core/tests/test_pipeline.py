"""The request pipeline: retries, Retry-After, fallback by error kind, streams."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest

from llmkernel import errors, hookimpl
from llmkernel.testing.scripted import Slow, err, make_kernel, scripted


async def test_retry_then_success_counts_attempts() -> None:
    kernel = make_kernel([err(errors.ServerError), err(errors.OverloadedError), "fine"])
    async with kernel:
        response = await kernel.achat(model="a/m1", messages="hi")
        provider = scripted(kernel, "a")
    assert response.text == "fine"
    assert response.attempts == 3
    assert response.provider == "a" and response.model == "m1"
    assert len(provider.requests) == 3


async def test_retry_after_is_honoured() -> None:
    kernel = make_kernel([err(errors.RateLimitError, retry_after=0.3), "after the wait"])
    started = time.monotonic()
    async with kernel:
        response = await kernel.achat(model="a/m1", messages="hi")
    assert response.text == "after the wait"
    assert response.attempts == 2
    assert time.monotonic() - started >= 0.29


async def test_retry_after_beyond_the_deadline_falls_back_at_once() -> None:
    kernel = make_kernel(
        [err(errors.RateLimitError, retry_after=30.0)], ["from b"], retry={"timeout": 5.0}
    )
    started = time.monotonic()
    async with kernel:
        response = await kernel.achat(model="group", messages="hi")
    assert response.provider == "b"
    assert time.monotonic() - started < 5.0


@pytest.mark.parametrize(
    "cls",
    [
        errors.RateLimitError,
        errors.OverloadedError,
        errors.ServerError,
        errors.TimeoutError,
        errors.NetworkError,
        errors.QuotaExceededError,
        errors.ModelNotFoundError,
        errors.ContextWindowExceededError,
    ],
)
async def test_fallback_to_the_next_candidate(cls: type[errors.ProviderError]) -> None:
    kernel = make_kernel([err(cls)] * 5, ["from b"], retry={"attempts": 2})
    async with kernel:
        response = await kernel.achat(model="group", messages="hi")
    assert response.text == "from b"
    assert response.provider == "b"
    tries_on_a = len(scripted(kernel, "a").requests)
    # a timeout or a rate limit moves on at once while another candidate waits (a hung
    # candidate must not eat the deadline, a 429's Retry-After is not waited out on the
    # same deployment); other retryable kinds are retried first
    retried = cls.default_retryable and cls not in (errors.TimeoutError, errors.RateLimitError)
    assert tries_on_a == (2 if retried else 1)
    assert response.attempts == tries_on_a + 1


async def test_authentication_falls_back_and_marks_unhealthy() -> None:
    kernel = make_kernel([err(errors.AuthenticationError)], ["b1", "b2"])
    async with kernel:
        first = await kernel.achat(model="group", messages="hi")
        second = await kernel.achat(model="group", messages="hi")
    assert first.provider == "b" and second.provider == "b"
    # a was tried once, then moved behind b for the second call
    assert len(scripted(kernel, "a").requests) == 1


@pytest.mark.parametrize("cls", [errors.InvalidRequestError, errors.ContentFilteredError])
async def test_invalid_request_raises_at_once(cls: type[errors.ProviderError]) -> None:
    kernel = make_kernel([err(cls)], ["never"])
    async with kernel:
        with pytest.raises(cls):
            await kernel.achat(model="group", messages="hi")
    assert scripted(kernel, "b").requests == []
    assert len(scripted(kernel, "a").requests) == 1


async def test_every_candidate_failing_lists_each_error() -> None:
    kernel = make_kernel([err(errors.ServerError)] * 3, [err(errors.AuthenticationError)])
    async with kernel:
        with pytest.raises(errors.AllCandidatesFailedError) as info:
            await kernel.achat(model="group", messages="hi")
    kinds = [type(e) for e in info.value.errors]
    assert kinds == [errors.ServerError, errors.AuthenticationError]
    assert info.value.errors[0].provider == "a" and info.value.errors[0].model == "m1"


async def test_a_single_candidate_raises_its_own_error() -> None:
    kernel = make_kernel([err(errors.ServerError)] * 3)
    async with kernel:
        with pytest.raises(errors.ServerError) as info:
            await kernel.achat(model="a/m1", messages="hi")
    assert info.value.provider == "a"


async def test_total_deadline_bounds_the_call() -> None:
    kernel = make_kernel(
        [err(errors.RateLimitError, retry_after=0.2)] * 10, retry={"attempts": 10, "timeout": 0.5}
    )
    started = time.monotonic()
    async with kernel:
        with pytest.raises(errors.RateLimitError):
            await kernel.achat(model="a/m1", messages="hi")
    assert time.monotonic() - started < 2.0


async def test_stream_failing_before_its_first_event_falls_back() -> None:
    kernel = make_kernel(
        [[errors.NetworkError("reset before anything")]], [["from ", "b"]], retry={"attempts": 1}
    )
    async with kernel:
        stream = kernel.astream(model="group", messages="hi")
        events = [e async for e in stream]
    assert [e.type for e in events] == ["text", "text", "usage", "finish"]
    assert stream.response is not None
    assert stream.response.text == "from b" and stream.response.provider == "b"
    assert stream.response.attempts == 2


async def test_stream_failing_after_its_first_event_ends_with_an_error() -> None:
    cut = errors.NetworkError("connection reset mid-stream")
    kernel = make_kernel([["one ", "two ", cut]], [["never"]])
    events = []
    async with kernel:
        with pytest.raises(errors.NetworkError) as info:
            async for event in kernel.astream(model="group", messages="hi"):
                events.append(event)
    assert [e.type for e in events] == ["text", "text", "error"]
    assert events[-1].error is info.value
    assert info.value.provider == "a"
    assert scripted(kernel, "b").requests == [], "no silent switch mid-answer"


async def test_stream_ends_with_usage_and_cost_then_finish() -> None:
    kernel = make_kernel([["a", "b", "c"]], prices={"a/m1": {"input": "1.00", "output": "2.00"}})
    async with kernel:
        events = [e async for e in kernel.astream(model="a/m1", messages="hi")]
    usage_event, finish = events[-2], events[-1]
    assert usage_event.type == "usage" and finish.type == "finish"
    assert usage_event.usage.output_tokens == 3
    assert usage_event.cost == Decimal("0.000016")  # 10 * 1.00 + 3 * 2.00 per million


def test_sync_api_and_context_manager_close_clients() -> None:
    with make_kernel(["sync hello", ["s1", "s2"]]) as kernel:
        response = kernel.chat(model="a/m1", messages=[{"role": "user", "content": "hi"}])
        stream = kernel.stream(model="a/m1", messages="hi")
        texts = [e.text for e in stream if e.type == "text"]
        provider = scripted(kernel, "a")
    assert response.text == "sync hello"
    assert texts == ["s1", "s2"] and stream.response is not None
    assert provider.closed


async def test_config_prices_give_a_decimal_cost_and_unknown_is_unpriced() -> None:
    kernel = make_kernel(["one two"], ["x"], prices={"a/m1": {"input": "0.15", "output": "0.60"}})
    async with kernel:
        priced = await kernel.achat(model="a/m1", messages="hi")
        unpriced = await kernel.achat(model="b/m1", messages="hi")
    assert priced.cost == Decimal("0.15") * 10 / 10**6 + Decimal("0.60") * 2 / 10**6
    assert isinstance(priced.cost, Decimal)
    assert unpriced.cost is None


async def test_structured_output_is_parsed() -> None:
    kernel = make_kernel(['{"city": "Paris"}'])
    async with kernel:
        response = await kernel.achat(
            model="a/m1", messages="hi", response_format={"type": "json_object"}
        )
    assert response.parsed == {"city": "Paris"}


async def test_embeddings_go_through_the_pipeline() -> None:
    kernel = make_kernel([err(errors.ServerError), "ok"])
    async with kernel:
        result = await kernel.aembed(model="a/m1", input=["ab", "abc"])
    assert result.vectors == [[2.0], [3.0]]
    assert result.attempts == 2 and result.provider == "a"


async def test_bad_message_names_the_field() -> None:
    kernel = make_kernel(["x"])
    with pytest.raises(errors.InvalidRequestError, match=r"messages\[1\]\.role"):
        await kernel.achat(
            model="a/m1",
            messages=[{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}],
        )


async def test_unknown_model_and_provider_are_named() -> None:
    kernel = make_kernel(["x"])
    with pytest.raises(errors.NoProviderError, match="'nope'"):
        await kernel.achat(model="nope", messages="hi")
    with pytest.raises(errors.NoProviderError, match="llmkernel-zzz"):
        await kernel.achat(model="zzz/model", messages="hi")


async def test_count_tokens_and_estimate_cost() -> None:
    kernel = make_kernel(["x"], prices={"a/m1": {"input": "1", "output": "1"}})
    count = kernel.count_tokens("a/m1", "hello world, this is a test")
    assert not count.exact and "estimate" in count.method
    assert count.tokens == 7 + 4
    estimate = kernel.estimate_cost("a/m1", "hello world, this is a test", output_tokens=100)
    assert estimate.typical == Decimal(count.tokens + 100) / 10**6
    assert estimate.max_output_tokens == 4096  # the scripted model declares no maximum
    # the count is an estimate, so the worst case bounds the input by its bytes (27)
    # and the message's framing (16): no tokenizer makes more tokens than bytes
    bound = len(b"hello world, this is a test") + 16
    assert estimate.worst == Decimal(bound + 4096) / 10**6
    capped = kernel.estimate_cost("a/m1", "hello world, this is a test", max_tokens=50)
    assert capped.worst == Decimal(bound + 50) / 10**6 and capped.typical_output_tokens == 12


def test_an_estimated_input_is_bounded_by_its_bytes_and_an_exact_one_is_not() -> None:
    from llmkernel import RequestContext
    from llmkernel.types import TokenCount

    text = "naïve café, 東京 " * 20  # multibyte: more bytes than characters
    kernel = make_kernel(["x"])
    request = kernel.build_request("a/m1", text)
    candidate = kernel.models.resolve("a/m1")[0]
    ctx = RequestContext.new(kernel, "chat", request)
    assert not ctx.token_count(candidate).exact
    assert ctx.input_tokens_bound(candidate) == len(text.encode()) + 16
    assert ctx.input_tokens_bound(candidate) > ctx.input_tokens(candidate)

    class Exact:
        __llmkernel_name__ = "exact"

        @hookimpl
        def count_tokens(self) -> TokenCount:
            return TokenCount(tokens=7, exact=True, method="test")

    exact = make_kernel(["x"], plugins=(Exact(),))
    ctx = RequestContext.new(exact, "chat", request)
    assert ctx.input_tokens_bound(exact.models.resolve("a/m1")[0]) == 7


async def test_the_worst_case_bills_output_as_reasoning_and_marked_input_as_1h_writes() -> None:
    prices = {
        "a/m1": {
            "input": "1",
            "output": "2",
            "reasoning": "5",
            "cache_write": "1.25",
            "cache_write_1h": "2",
        }
    }
    kernel = make_kernel(["x"], prices=prices)
    plain = kernel.estimate_cost("a/m1", "hi", max_tokens=10)
    bound = len(b"hi") + 16  # an estimated count is bounded by bytes and framing
    assert plain.worst == Decimal(bound * 1 + 10 * 5) / 10**6
    marked = [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    cached = kernel.estimate_cost("a/m1", [{"role": "user", "content": marked}], max_tokens=10)
    assert cached.worst == Decimal(bound * 2 + 10 * 5) / 10**6


async def test_a_stream_failing_after_only_hidden_events_still_falls_back() -> None:
    from llmkernel.types import MetadataEvent

    kernel = make_kernel(
        [[MetadataEvent(id="r1", model="m1"), errors.NetworkError("reset")]],
        [["from b"]],
        retry={"attempts": 1},
    )
    async with kernel:
        stream = kernel.astream(model="group", messages="hi")
        events = [e.type async for e in stream]
    assert events == ["text", "usage", "finish"]
    assert stream.response is not None and stream.response.provider == "b"


async def test_a_backoff_never_runs_past_the_deadline() -> None:
    kernel = make_kernel(
        [err(errors.ServerError)] * 5,
        ["from b"],
        retry={"attempts": 3, "initial_wait": 2.0, "max_wait": 2.0, "timeout": 1.0},
    )
    started = time.monotonic()
    async with kernel:
        response = await kernel.achat(model="group", messages="hi")
    assert response.provider == "b", "the 2 s wait would overrun: fall back instead"
    assert time.monotonic() - started < 1.0


async def test_a_hung_first_candidate_leaves_the_next_its_share_of_the_deadline() -> None:
    slow = Slow(5.0, "too late")
    kernel = make_kernel([slow], ["in time"], retry={"attempts": 2, "timeout": 0.6})
    started = time.monotonic()
    async with kernel:
        response = await kernel.achat(model="group", messages="hi")
    assert response.provider == "b" and response.text == "in time"
    assert time.monotonic() - started < 0.6


async def test_nothing_is_tried_once_the_deadline_has_passed() -> None:
    slow = Slow(0.4, errors.ServerError("slow and failing"))
    kernel = make_kernel(
        [slow], ["late"], retry={"attempts": 2, "timeout": 0.35, "attempt_timeout": 10}
    )
    async with kernel:
        with pytest.raises(errors.ProviderError):
            await kernel.achat(model="a/m1", messages="hi", timeout=0.2)
        late = scripted(kernel, "b")
    assert late.requests == []


def test_closing_inside_a_running_loop_says_what_to_do() -> None:
    async def misuse() -> None:
        kernel = make_kernel(["x"])
        await kernel.achat(model="a/m1", messages="hi")
        with pytest.raises(RuntimeError, match="async with kernel"):
            kernel.close()
        await kernel.aclose()

    asyncio.run(misuse())


async def test_the_deadline_holds_when_a_providers_own_timeout_does_not_fit() -> None:
    kernel = make_kernel([Slow(5.0, "too late")], retry={"timeout": 0.3})
    scripted(kernel, "a").call_timeout = 100.0  # its own limit is longer than the deadline
    started = time.monotonic()
    async with kernel:
        with pytest.raises(errors.TimeoutError, match="total deadline"):
            await kernel.achat(model="a/m1", messages="hi")
    assert time.monotonic() - started < 2.0


def test_replace_copies_fields_and_refuses_unknown_ones() -> None:
    from llmkernel.types import Usage, replace

    usage = Usage(input_tokens=5, cached_input_tokens=2)
    changed = replace(usage, output_tokens=3)
    assert changed == Usage(input_tokens=5, cached_input_tokens=2, output_tokens=3)
    assert usage.output_tokens == 0, "the original is untouched"
    with pytest.raises(TypeError, match="no field 'outputs'"):
        replace(usage, outputs=3)
