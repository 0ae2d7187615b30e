"""The ledger plugin: configure, on_request_end, flush on close, ``costs`` output.

Stand-ins with the public attributes of the kernel's ``RequestContext`` and
``Outcome`` drive the hook; the pipeline itself calls it once per call.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from llmkernel.config import Config
from llmkernel.errors import ConfigError
from llmkernel.routing import Candidate
from llmkernel.types import Usage
from llmkernel_ledger import plugin
from llmkernel_ledger.cli import add_arguments, run


class StubKernel:
    def __init__(self, config: Config) -> None:
        self.config = config
        from llmkernel.lifecycle import Lifecycle

        self.lifecycle = Lifecycle(top=False)  # a kernel's, for the plugins' closers

    def close(self) -> None:
        for fn in reversed(self.lifecycle.closers):
            fn()


def kernel(tmp_path: Path, **settings: Any) -> Any:
    config = Config.load({"plugin": {"ledger": {"path": str(tmp_path / "l.db"), **settings}}})
    k = StubKernel(config)
    plugin.configure(kernel=k, config=config)
    return k


def call(i: int, provider: str, cost: str | None, **kw: Any) -> tuple[Any, Any]:
    ctx = SimpleNamespace(
        id=f"c{i}",
        kind="chat",
        started_at=time.time(),
        metadata=kw.pop("metadata", {}),
        attempts=[],
        request=None,
    )
    outcome = SimpleNamespace(
        status=kw.pop("status", "ok"),
        error=kw.pop("error", None),
        candidate=Candidate(provider=provider, model="m1", provider_type="mock"),
        usage=Usage(input_tokens=100, output_tokens=20, cached_input_tokens=40),
        cost=None if cost is None else Decimal(cost),
        latency=0.2,
        first_event_latency=0.05,
        cached=kw.pop("cached", False),
        attempts=(1, 2),
    )
    return ctx, outcome


def costs(k: Any, *argv: str) -> str:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = io.StringIO()
    assert run(parser.parse_args(list(argv)), plugin.ledger_for(k), out) == 0
    return out.getvalue()


def test_every_ending_recorded_and_flushed_on_close(tmp_path: Path) -> None:
    k = kernel(tmp_path)
    endings = [
        call(1, "oa", "0.5"),
        call(2, "oa", None, status="error", error=TimeoutError("slow")),
        call(3, "an", "0.25", cached=True, metadata={"tenant": "acme", "key": "sk-secret-123"}),
        call(4, "an", None, status="cancelled"),
        call(5, "oa", None, status="refused"),
    ]
    for ctx, outcome in endings:
        plugin.on_request_end(k, ctx, outcome)
    plugin.on_request_end(k, *endings[0])  # offered twice: recorded once
    k.close()
    store = plugin.ledger_for(k).store
    assert store.count() == 5
    rows = {r["request_id"]: r for r in store.rows()}
    assert rows["c2"]["error_kind"] == "TimeoutError"
    assert rows["c3"]["cached"] == 1 and rows["c3"]["tenant"] == "acme"
    assert rows["c3"]["key"].startswith("sha256:")  # never the secret
    assert rows["c1"]["attempts"] == 2 and rows["c1"]["cached_input_tokens"] == 40
    assert store.total() == Decimal("0.75")


def test_costs_command_totals_and_groups(tmp_path: Path) -> None:
    k = kernel(tmp_path)
    for i, (provider, cost) in enumerate([("oa", "0.1"), ("oa", "0.2"), ("an", "0.05")]):
        plugin.on_request_end(k, *call(i, provider, cost))
    plugin.on_request_end(k, *call(9, "an", None))  # unpriced
    text = costs(k)
    today, month = text.splitlines()[1:3]
    assert today.startswith("today") and today.split()[-1] == "0.35"
    assert month.startswith("this month") and month.split()[-1] == "0.35"
    data = json.loads(costs(k, "--by", "provider", "--json"))
    assert {d["provider"]: d["cost"] for d in data} == {"an": "0.05", "oa": "0.3"}
    assert {d["provider"]: d["unpriced"] for d in data} == {"an": 1, "oa": 0}
    csv_rows = costs(k, "--rows", "--csv").splitlines()
    assert len(csv_rows) == 5 and csv_rows[0].startswith("request_id,")
    assert costs(k, "--since", "2999-01-01", "--json").count('"requests": 0') == 1
    with pytest.raises(ConfigError, match="--since"):
        costs(k, "--since", "yesterday")


def test_bad_settings_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="timezone"):
        kernel(tmp_path, timezone="Nowhere/Else")
    with pytest.raises(ConfigError, match="pth"):
        kernel(tmp_path, pth="x")


def test_a_program_that_never_closes_its_kernel_keeps_every_row(tmp_path: Path) -> None:
    """The group commit waits ``linger`` seconds before it writes; a short script's
    last calls come within that window of its exit. What is queued is committed at
    interpreter exit, while the writer thread still runs."""
    import sqlite3
    import subprocess
    import sys
    import textwrap

    path = tmp_path / "ledger.db"
    script = tmp_path / "calls_and_exit.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import llmkernel_ledger.plugin
            from llmkernel import Kernel
            from llmkernel.testing.scripted import ScriptedPlugin

            kernel = Kernel.from_config(
                {{
                    "providers": {{"a": {{"type": "scripted"}}}},
                    "plugin": {{
                        "ledger": {{"path": {str(path)!r}, "durability": "fast", "linger": 1.0}}
                    }},
                }},
                plugins=[ScriptedPlugin(), llmkernel_ledger.plugin],
                entry_points=False,
            )
            for i in range(3):
                kernel.chat(model="a/m1", messages=f"call {{i}}")
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT count(*) FROM requests").fetchone() == (3,)
    finally:
        db.close()
