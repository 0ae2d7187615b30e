"""``abatch`` through a real Kernel with the mock provider: thousands of requests,
injected failures, every custom_id answered once; the per-run budget."""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llmkernel_mock")

from llmkernel import Kernel, hookimpl
from llmkernel_batch import BatchItem, BatchResult, RunBudget, abatch
from llmkernel_batch.runner import worst_case

FAST_RETRY = {"initial_wait": 0, "max_wait": 0, "jitter": 0, "attempts": 2}


def requests(n: int, model: str = "sim/chat", **extra: Any) -> list[dict[str, Any]]:
    return [
        {"custom_id": f"r{i}", "model": model,
         "messages": [{"role": "user", "content": f"question {i}"}], **extra}
        for i in range(n)
    ]  # fmt: skip


class Seen:
    """Records the metadata of every call's end, as the ledger would see it."""

    def __init__(self) -> None:
        self.ends: list[dict[str, str]] = []

    @hookimpl
    def on_request_end(self, ctx: Any, outcome: Any) -> None:
        self.ends.append(dict(ctx.metadata))


async def collect(kernel: Kernel, reqs: Any, **kwargs: Any) -> list[BatchResult]:
    return [r async for r in abatch(kernel, reqs, **kwargs)]


def test_two_thousand_with_failures_each_answered_once() -> None:
    seen = Seen()
    config = {
        "providers": {
            "sim": {
                "type": "mock",
                "latency": 0.001,
                "failure_rate": 0.3,
                "error_kinds": ["server", "rate_limit", "invalid_request", "timeout"],
                "retry_after": 0,
            }
        },
        "retry": FAST_RETRY,
    }
    kernel = Kernel.from_config(config, plugins=[seen])

    async def main() -> list[BatchResult]:
        async with kernel:
            return await collect(kernel, requests(2000), concurrency=50, run_id="run-t")

    results = asyncio.run(main())
    ids = Counter(r.custom_id for r in results)
    assert len(results) == 2000
    assert set(ids) == {f"r{i}" for i in range(2000)}
    assert max(ids.values()) == 1
    statuses = Counter(r.status for r in results)
    assert statuses["ok"] > 500 and statuses["error"] > 100  # failures were injected
    assert statuses["skipped"] == 0
    kinds = {r.error_kind for r in results if r.status == "error"}
    # the injected kinds; with llmkernel-routing installed its breaker may also refuse
    assert kinds <= {"server", "rate_limit", "invalid_request", "timeout", "breaker", "no_provider"}
    assert all(r.error_message for r in results if r.status == "error")
    for r in results:
        if r.ok:
            assert r.response is not None and r.response["text"]
            assert r.response["provider"] == "sim"
    # every call carried the run and its custom_id, for the ledger
    assert len(seen.ends) == 2000
    assert {e["batch"] for e in seen.ends} == {"run-t"}
    assert {e["custom_id"] for e in seen.ends} == set(ids)


def test_results_come_as_they_complete_not_in_order() -> None:
    config = {"providers": {"slow": {"type": "mock", "latency": 0.2}, "fast": {"type": "mock"}}}
    reqs = [
        {"custom_id": "slow", "model": "slow/echo", "messages": [{"role": "user", "content": "a"}]},
        {"custom_id": "fast", "model": "fast/echo", "messages": [{"role": "user", "content": "b"}]},
    ]
    kernel = Kernel.from_config(config)

    async def main() -> list[BatchResult]:
        async with kernel:
            return await collect(kernel, reqs, concurrency=2)

    assert [r.custom_id for r in asyncio.run(main())] == ["fast", "slow"]


def test_closing_early_cancels_calls_in_flight() -> None:
    config = {"providers": {"sim": {"type": "mock", "latency": 5.0}, "now": {"type": "mock"}}}
    reqs = [
        {"custom_id": "now", "model": "now/echo", "messages": [{"role": "user", "content": "x"}]}
    ]
    reqs += requests(5, model="sim/echo")
    kernel = Kernel.from_config(config)

    async def main() -> tuple[str, int]:
        async with kernel:
            results = abatch(kernel, reqs, concurrency=6)
            first = await results.__anext__()
            await results.aclose()  # the five slow calls are cancelled, not awaited
            tasks = [t for t in asyncio.all_tasks() if t.get_coro().__name__ == "_one"]
            return first.custom_id, len(tasks)

    first, left = asyncio.run(asyncio.wait_for(main(), timeout=4))
    assert first == "now"
    assert left == 0


def test_invalid_request_in_python_is_an_error_result_and_the_rest_go_on() -> None:
    kernel = Kernel.from_config({"providers": {"sim": {"type": "mock"}}})
    reqs: list[Any] = [{"custom_id": "bad", "messages": []}, *requests(2, model="sim/echo")]

    async def main() -> list[BatchResult]:
        async with kernel:
            return await collect(kernel, reqs)

    results = {r.custom_id: r for r in asyncio.run(main())}
    assert results["bad"].status == "error"
    assert results["bad"].error_kind == "invalid_request"
    assert results["r0"].ok and results["r1"].ok


PRICED = {
    "providers": {"sim": {"type": "mock", "output_tokens": 20}},
    "prices": {"sim/chat": {"input": "1000", "output": "2000"}},
}


def test_budget_stops_within_one_worst_case_request() -> None:
    kernel = Kernel.from_config(PRICED)
    # max_tokens equals what the mock writes; the input's worst case is its bytes (the
    # count is an estimate), so a call costs less than the reservation it is held to
    reqs = requests(400, max_tokens=20)
    worst = worst_case(kernel, BatchItem(custom_id="x", body=reqs[0]))
    assert worst is not None and worst > 0
    amount = worst * 37 + worst / 2
    budget = RunBudget(limit=amount)

    async def main() -> list[BatchResult]:
        async with kernel:
            return await collect(kernel, reqs, concurrency=8, budget=budget)

    results = asyncio.run(main())
    spent = sum((r.cost or Decimal(0) for r in results if r.ok), Decimal(0))
    assert budget.stopped
    assert spent == budget.spent
    assert spent <= amount  # never over
    # stopped only when one more worst case did not fit beside the reservations in
    # flight (8 at most, each the worst case: an upper bound of what it is billed)
    assert spent > amount - worst * 8
    skipped = [r for r in results if r.status == "skipped"]
    assert len(skipped) == 1 and skipped[0].error_kind == "budget"
    assert "budget" in (skipped[0].error_message or "")
    assert len([r for r in results if r.ok]) >= 37


def test_budget_with_an_unpriced_model_skips_it() -> None:
    kernel = Kernel.from_config({"providers": {"sim": {"type": "mock"}}})
    reqs = requests(1, model="sim/echo")

    class Unpriced:
        @hookimpl
        def price_model(self) -> None:
            return None

    async def main() -> list[BatchResult]:
        async with kernel:
            return await collect(kernel, reqs, budget="1.00")

    # the mock prices itself at zero: priced, so it runs
    (result,) = asyncio.run(main())
    assert result.ok and result.cost == 0


def test_bad_arguments_are_refused() -> None:
    kernel = Kernel.from_config({"providers": {"sim": {"type": "mock"}}})

    async def main(**kwargs: Any) -> None:
        async for _ in abatch(kernel, requests(1), **kwargs):
            pass

    with pytest.raises(ValueError, match="concurrency"):
        asyncio.run(main(concurrency=0))
    with pytest.raises(ValueError, match="budget"):
        asyncio.run(main(budget="lots"))


def test_ledger_records_every_call(tmp_path: Path) -> None:
    pytest.importorskip("llmkernel_ledger")
    from llmkernel_ledger.plugin import ledger_for

    config = {
        "providers": {"sim": {"type": "mock", "failure_rate": 0.2, "error_kinds": ["server"]}},
        "retry": FAST_RETRY,
        "plugin": {"ledger": {"path": str(tmp_path / "ledger.db")}},
    }
    kernel = Kernel.from_config(config)

    async def main() -> list[BatchResult]:
        async with kernel:
            return await collect(kernel, requests(300), concurrency=20)

    results = asyncio.run(main())
    store = ledger_for(kernel).store
    assert store.count() == 300 == len(results)
