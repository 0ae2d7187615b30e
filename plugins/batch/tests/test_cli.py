"""``llmkernel batch`` on the mock: resumable output, kill -9 and rerun, Ctrl-C,
the budget, order, dry run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llmkernel_mock")

from llmkernel_batch.live import OutputFile
from llmkernel_cli.shell import main

CONFIG = """
[providers.sim]
type = "mock"
latency = {latency}
output_tokens = 20
failure_rate = {failure_rate}
error_kinds = ["server", "invalid_request"]
retry_after = 0

[retry]
attempts = 2
initial_wait = 0
max_wait = 0
jitter = 0

[prices."sim/chat"]
input = "1000"
output = "2000"
"""


def setup(tmp_path: Path, n: int, *, latency: float = 0.0, failure_rate: float = 0.0,
          extra: dict[str, Any] | None = None) -> tuple[Path, Path]:  # fmt: skip
    config = tmp_path / "llmkernel.toml"
    config.write_text(CONFIG.format(latency=latency, failure_rate=failure_rate))
    data = tmp_path / "in.jsonl"
    with data.open("w") as f:
        for i in range(n):
            question = [{"role": "user", "content": f"question {i}"}]
            line = {
                "custom_id": f"r{i}",
                "model": "sim/chat",
                "messages": question,
                **(extra or {}),
            }
            f.write(json.dumps(line) + "\n")
    return config, data


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_run_then_rerun_skips_done_and_retry_failed_replaces_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, data = setup(tmp_path, 300, failure_rate=0.3)
    out = tmp_path / "out.jsonl"
    code = main(["-c", str(config), "batch", str(data), "--output", str(out), "-n", "20"])
    first = lines(out)
    assert len(first) == 300 and len({x["custom_id"] for x in first}) == 300
    failed = [x for x in first if x["status"] == "error"]
    assert failed and code == 1
    assert all(x["error"]["kind"] and x["error"]["message"] for x in failed)
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    assert summary.startswith(f"batch: 300 done ({300 - len(failed)} ok, {len(failed)} failed)")

    # again, without --retry-failed: nothing to do
    main(["-c", str(config), "batch", str(data), "--output", str(out)])
    assert lines(out) == first
    assert "0 done" in capsys.readouterr().err

    # the failed ones again, on a provider that no longer fails
    config.write_text(CONFIG.format(latency=0.0, failure_rate=0.0))
    code = main(["-c", str(config), "batch", str(data), "--output", str(out), "--retry-failed"])
    final = lines(out)
    assert code == 0
    assert Counter(x["custom_id"] for x in final) == Counter(f"r{i}" for i in range(300))
    assert all(x["status"] == "ok" for x in final)
    assert f"{len(failed)} done ({len(failed)} ok, 0 failed), {300 - len(failed)} already done" in (
        capsys.readouterr().err
    )


def test_ordered_output_follows_the_input(tmp_path: Path) -> None:
    config, data = setup(tmp_path, 120, failure_rate=0.2)
    out = tmp_path / "out.jsonl"
    main(["-c", str(config), "batch", str(data), "--output", str(out), "-n", "16", "--ordered"])
    assert [x["custom_id"] for x in lines(out)] == [f"r{i}" for i in range(120)]


def test_budget_stops_within_one_worst_case_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, data = setup(tmp_path, 200, extra={"max_tokens": 20})
    out = tmp_path / "out.jsonl"
    main(["-c", str(config), "batch", str(data), "--dry-run"])
    dry = capsys.readouterr().out
    total = Decimal(dry.split("worst-case cost: $")[1].split()[0])
    worst = total / 200
    amount = worst * 50 + worst / 3
    code = main(["-c", str(config), "batch", str(data), "--output", str(out), "-n", "8",
                 "--budget", str(amount)])  # fmt: skip
    err = capsys.readouterr().err
    done = lines(out)
    spent = sum(Decimal(x["response"]["cost"]) for x in done)
    assert code == 1
    assert "stopped at the budget" in err
    # the reservation is the worst case (an upper bound): it stops once one more does
    # not fit beside the 8 in flight
    assert amount - worst * 8 < spent <= amount
    assert 50 <= len(done) < 200
    # a larger budget goes on from there, without redoing anything
    main(
        ["-c", str(config), "batch", str(data), "--output", str(out), "--budget", str(worst * 1000)]
    )
    assert Counter(x["custom_id"] for x in lines(out)) == Counter(f"r{i}" for i in range(200))


def test_dry_run_reports_bad_lines_and_the_worst_case(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, data = setup(tmp_path, 3, extra={"max_tokens": 10})
    with data.open("a") as f:
        f.write("{oops\n")
    code = main(["-c", str(config), "batch", str(data), "--dry-run"])
    captured = capsys.readouterr()
    assert code == 1
    assert "3 request(s), 1 bad line(s); models: sim/chat x3" in captured.out
    assert "worst-case cost: $" in captured.out
    assert "line 4: not JSON" in captured.err
    assert not (tmp_path / "in.results.jsonl").exists()


def test_text_file_with_model_and_default_output(tmp_path: Path) -> None:
    config, _ = setup(tmp_path, 0)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("one\ntwo\nthree\n")
    assert main(["-c", str(config), "batch", str(prompts), "-m", "sim/echo"]) == 0
    results = lines(tmp_path / "prompts.results.jsonl")
    assert sorted((x["custom_id"], x["response"]["text"]) for x in results) == [
        ("line-1", "one"), ("line-2", "two"), ("line-3", "three")
    ]  # fmt: skip


def test_o_is_option_everywhere_and_help_names_the_real_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = setup(tmp_path, 0)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a long question\n")
    args = ["-c", str(config), "batch", str(prompts), "-m", "sim/chat"]
    assert main([*args, "-o", "max_tokens=2", "-o", "seed=7"]) == 0
    (result,) = lines(tmp_path / "prompts.results.jsonl")
    assert result["response"]["usage"]["output_tokens"] <= 2
    with pytest.raises(SystemExit):
        main(["batch", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "STEM.results.jsonl beside INPUT, prompts.txt -> prompts.results.jsonl" in text
    assert "-o KEY=VALUE, --option KEY=VALUE" in text


def test_partial_last_line_is_cut_before_resuming(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"custom_id":"a","status":"ok"}\n{"custom_id":"b","sta')
    file = OutputFile(out)
    file.repair()
    assert out.read_text() == '{"custom_id":"a","status":"ok"}\n'
    assert file.finished() == {"a": "ok"}


def _start(config: Path, data: Path, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmkernel_cli",
            "-c",
            str(config),
            "batch",
            str(data),
            "--output",
            str(out),
            "-n",
            "10",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for_lines(out: Path, count: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"the batch process wrote fewer than {count} lines")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigkill_mid_run_then_rerun_nothing_twice_nothing_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, data = setup(tmp_path, 600, latency=0.05, failure_rate=0.1)
    out = tmp_path / "out.jsonl"
    proc = _start(config, data, out)
    try:
        _wait_for_lines(out, 60, proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    assert proc.returncode == -signal.SIGKILL
    repaired = OutputFile(out)
    repaired.repair()
    before = repaired.finished()
    assert 60 <= len(before) < 600  # killed mid-run
    config.write_text(CONFIG.format(latency=0.0, failure_rate=0.1))
    main(["-c", str(config), "batch", str(data), "--output", str(out), "-n", "20"])
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    # the rerun did only what was not done
    assert f"batch: {600 - len(before)} done" in summary
    assert f"{len(before)} already done" in summary
    final = lines(out)
    assert Counter(x["custom_id"] for x in final) == Counter(f"r{i}" for i in range(600))
    kept = {x["custom_id"]: x for x in final}
    assert all(kept[cid]["status"] == status for cid, status in before.items())


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_stops_cleanly(tmp_path: Path) -> None:
    config, data = setup(tmp_path, 600, latency=0.05)
    out = tmp_path / "out.jsonl"
    proc = _start(config, data, out)
    try:
        _wait_for_lines(out, 40, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    text = err.decode()
    assert "interrupted" in text
    written = lines(out)  # whole lines only: everything finished was written
    assert 40 <= len(written) < 600
    assert len({x["custom_id"] for x in written}) == len(written)
    assert out.read_bytes().endswith(b"\n")
