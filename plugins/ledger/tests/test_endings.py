"""Every ending that used tokens is billed: an error after a partial answer, a stream
its reader stopped (``abandoned``), a stream whose caller was cancelled (a gateway
client that hung up). Real kernels: the scripted provider for an exact partial
usage, the offline mock provider for streams stopped early.

The kernel estimates the usage of a stream stopped before the provider reported it
(input counted, output counted from what was streamed) and marks it estimated
(``Outcome.usage_estimated``, or ``Usage.estimated``); until it does, the tests of
those endings are expected to fail.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import llmkernel_ledger.plugin
from llmkernel import Kernel
from llmkernel.errors import NetworkError
from llmkernel.testing.scripted import make_kernel
from llmkernel.types import Usage, UsageEvent
from llmkernel_ledger.plugin import ledger_for


def only_row(kernel: Kernel) -> dict[str, Any]:
    ledger = ledger_for(kernel)
    assert ledger.writer.flush()
    rows = list(ledger.store.rows())
    assert len(rows) == 1
    return rows[0]


def test_an_error_after_a_partial_answer_is_billed(tmp_path: Path) -> None:
    """The provider reported usage, then the stream broke: the row has the tokens and
    their cost (it had the tokens and cost NULL)."""
    script = ["one", "two", UsageEvent(usage=Usage(input_tokens=12, output_tokens=2))]
    kernel = make_kernel(
        [[*script, NetworkError("reset")]],  # one stream: text, usage, then the cut
        plugins=(llmkernel_ledger.plugin,),
        prices={"a/m1": {"input": "1", "output": "2"}},
        plugin={"ledger": {"path": str(tmp_path / "l.db")}},
    )
    with kernel:
        events = []
        with pytest.raises(NetworkError):
            for event in kernel.stream(model="a/m1", messages="hi"):
                events.append(event.type)
        assert events == ["text", "text", "error"]
        row = only_row(kernel)
    assert row["status"] == "error" and row["error_kind"] == "network"
    assert (row["input_tokens"], row["output_tokens"]) == (12, 2)
    assert Decimal(row["cost"]) == Decimal("0.000016")  # 12 x 1 + 2 x 2 per million
    assert row["usage_estimated"] == 0  # the provider's own count


def mock_kernel(tmp_path: Path, **mock: Any) -> Kernel:
    pytest.importorskip("llmkernel_mock")
    return Kernel.from_config(
        {
            "providers": {"sim": {"type": "mock", **mock}},
            "prices": {"sim/chat": {"input": "1", "output": "2"}},
            "plugin": {"ledger": {"path": str(tmp_path / "l.db")}},
        }
    )


def assert_billed_estimate(row: dict[str, Any], status: str) -> None:
    assert row["status"] == status
    assert row["input_tokens"] > 0 and row["output_tokens"] > 0
    assert row["cost"] is not None and Decimal(row["cost"]) > 0
    assert row["usage_estimated"] == 1


def test_a_stream_stopped_after_its_text_is_billed(tmp_path: Path) -> None:
    with mock_kernel(tmp_path) as kernel:
        texts = 0
        with kernel.stream(model="sim/chat", messages="tell me a story") as stream:
            for event in stream:
                texts += event.type == "text"
                if texts == 5:
                    break  # before the provider's usage
        assert_billed_estimate(only_row(kernel), "abandoned")


def test_a_cancelled_stream_is_billed(tmp_path: Path) -> None:
    async def main() -> dict[str, Any]:
        async with mock_kernel(tmp_path, tokens_per_second=50) as kernel:
            seen = asyncio.Event()

            async def read() -> None:
                async for event in kernel.astream(model="sim/chat", messages="a story"):
                    if event.type == "text":
                        seen.set()

            task = asyncio.create_task(read())
            await seen.wait()
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return only_row(kernel)

    assert_billed_estimate(asyncio.run(main()), "cancelled")
