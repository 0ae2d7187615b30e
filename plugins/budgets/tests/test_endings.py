"""Budgets against what calls are really billed, through real kernels: an ending
with tokens but no cost is settled at its price (never left a free reservation); a
call billed past its reservation (an upstream that ignores ``max_tokens``) is billed
in full, logged, counted, and the limit then refuses; across four processes the
spend stays within the limit plus what was in flight; SQLite errors are
``LedgerError``s."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import llmkernel_budgets.plugin
import llmkernel_ledger.plugin
from llmkernel import Kernel
from llmkernel.errors import BudgetExceededError, NetworkError
from llmkernel.testing.scripted import make_kernel
from llmkernel.types import Usage, UsageEvent
from llmkernel_budgets.plugin import budgets_for
from llmkernel_ledger.errors import LedgerError
from llmkernel_ledger.plugin import ledger_for

PLUGINS = (llmkernel_ledger.plugin, llmkernel_budgets.plugin)


def scripted(tmp_path: Path, script: list[Any], **budgets: Any) -> Kernel:
    return make_kernel(
        script,
        plugins=PLUGINS,
        retry={"attempts": 1},
        prices={"a/m1": {"input": "0", "output": "10000"}},  # 0.01 $ an output token
        plugin={
            "ledger": {"path": str(tmp_path / "l.db"), "busy_timeout": 0.05},
            "budgets": {"limits": [{"name": "cap", "amount": "10"}], **budgets},
        },
    )


@pytest.mark.parametrize("slab", [0, 5])
def test_an_error_after_a_partial_answer_is_settled_at_its_price(tmp_path: Path, slab: int) -> None:
    stream = ["one", UsageEvent(usage=Usage(input_tokens=10, output_tokens=3)), NetworkError("cut")]
    with scripted(tmp_path, [stream], slab=slab) as kernel:
        with pytest.raises(NetworkError):
            list(kernel.stream(model="a/m1", messages="hi", max_tokens=20))
        store = budgets_for(kernel)
        assert store is not None
        assert ledger_for(kernel).writer.flush()
        limit = store.limits[0]
        billed = Decimal("0.03")  # 3 output tokens
        assert store.spent(limit) == ledger_for(kernel).store.total() == billed
    assert store.reserved(limit) == 0


def test_abandoned_stream_is_settled_at_its_estimate(tmp_path: Path) -> None:
    """Run with the mock provider: its usage comes last, after the text."""
    pytest.importorskip("llmkernel_mock")
    kernel = Kernel.from_config(
        {
            "providers": {"sim": {"type": "mock"}},
            "prices": {"sim/chat": {"input": "1", "output": "2"}},
            "plugin": {
                "ledger": {"path": str(tmp_path / "l.db")},
                "budgets": {"limits": [{"name": "cap", "amount": "10"}], "slab": 0},
            },
        }
    )
    with kernel:
        with kernel.stream(model="sim/chat", messages="a long story") as stream:
            for event in stream:
                if event.type == "text":
                    break
        store = budgets_for(kernel)
        assert store is not None and ledger_for(kernel).writer.flush()
        spent = store.spent(store.limits[0])
        assert spent == ledger_for(kernel).store.total()
        assert spent > 0
        assert store.reserved(store.limits[0]) == 0


def test_an_overrun_is_billed_logged_counted_and_refuses_past_the_limit(
    tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    """``max_tokens=1`` reserves 0.01 $; the provider bills five output tokens (0.05
    $). Slabs of 50 worst cases used to hand that out from memory until renewal:
    400 calls spent 20 $ of a 10 $ limit."""
    with scripted(tmp_path, ["a b c d e"] * 400) as kernel:
        granted = refused = 0
        for _ in range(400):
            try:
                kernel.chat(model="a/m1", messages="hi", max_tokens=1)
                granted += 1
            except BudgetExceededError:
                refused += 1
        store = budgets_for(kernel)
        assert store is not None and ledger_for(kernel).writer.flush()
        total = ledger_for(kernel).store.total()
        stats = kernel.stats()["budgets"]
    assert refused and granted + refused == 400
    assert total == Decimal("0.05") * granted  # billed in full, never capped
    assert total <= Decimal("10") + Decimal("0.05")  # the limit and one call in flight
    assert stats["overruns"] == granted
    assert Decimal(stats["overrun_excess"]) == Decimal("0.04") * granted
    overruns = [e for e in logs if e["event"] == "llmkernel.budgets.overrun"]
    assert len(overruns) == granted
    assert overruns[0]["reserved"] == "0.01" and overruns[0]["billed"] == "0.05"


def test_sqlite_errors_of_budgets_are_ledger_errors(tmp_path: Path) -> None:
    with scripted(tmp_path, ["ok"] * 3, slab=0) as kernel:
        kernel.chat(model="a/m1", messages="hi", max_tokens=1)
        other = sqlite3.connect(tmp_path / "l.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            with pytest.raises(LedgerError, match="could not reserve a budget") as info:
                kernel.chat(model="a/m1", messages="hi", max_tokens=1)
            assert info.value.path == str(tmp_path / "l.db")
            assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        finally:
            other.execute("ROLLBACK")
            other.close()
        kernel.chat(model="a/m1", messages="hi", max_tokens=1)


CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    from llmkernel import Kernel
    from llmkernel.errors import BudgetExceededError

    path, url = sys.argv[1], sys.argv[2]
    config = {
        "providers": {"up": {"type": "openai", "base_url": url,
                             "api_key_env": "FAKE_OPENAI_KEY"}},
        "prices": {"up/gpt-test": {"input": "0", "output": "10000"}},
        "plugin": {"ledger": {"path": path},
                   "budgets": {"limits": [{"name": "cap", "amount": "10"}]}},
    }

    async def main():
        granted = refused = 0
        async with Kernel.from_config(config) as kernel:
            async def worker():
                nonlocal granted, refused
                for _ in range(60):
                    try:
                        await kernel.achat(model="up/gpt-test", messages="hi", max_tokens=1)
                        granted += 1
                    except BudgetExceededError:
                        refused += 1
                        await asyncio.sleep(0.01)
            await asyncio.gather(*(worker() for _ in range(5)))
        print(json.dumps({"granted": granted, "refused": refused}))

    asyncio.run(main())
    """
)


def test_four_processes_and_an_upstream_billing_past_max_tokens(tmp_path: Path) -> None:
    """Four processes of five concurrent callers share a 10 $ limit; each call
    reserves 0.01 $ (one output token) and the upstream bills 100 output tokens
    (1 $). The spend may pass the limit only by the calls in flight when it was
    reached (at most 4 x 5 x 1 $); before, it reached hundreds of dollars."""
    from llmkernel_http.testing.fake_server import FakeResponse, FakeServer

    answer = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_764_460_800,
        "model": "gpt-test",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "a long answer"},
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 8, "completion_tokens": 100, "total_tokens": 108},
    }
    path = tmp_path / "l.db"
    with FakeServer() as server:
        server.expect("POST", "/v1/chat/completions", FakeResponse.json_body(answer))
        env = {**os.environ, "FAKE_OPENAI_KEY": "sk-test"}
        children = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD, str(path), f"{server.url}/v1"],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(4)
        ]
        results = []
        for child in children:
            out, _ = child.communicate(timeout=300)
            assert child.returncode == 0
            results.append(json.loads(out.splitlines()[-1]))  # (after its log lines)
        sent = len(server.requests_to("/v1/chat/completions"))
    granted = sum(r["granted"] for r in results)
    conn = sqlite3.connect(path)
    costs = [
        Decimal(r[0]) for r in conn.execute("SELECT cost FROM requests WHERE cost IS NOT NULL")
    ]
    conn.close()
    total = sum(costs, Decimal(0))
    assert sent == granted == len(costs)  # every call that reached the upstream is billed
    assert all(cost == Decimal("1") for cost in costs)  # in full
    assert Decimal("10") <= total <= Decimal("10") + 4 * 5 * Decimal("1"), (total, results)
    assert all(r["refused"] for r in results)  # each process was refused in the end
