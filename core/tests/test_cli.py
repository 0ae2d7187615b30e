"""The CLI as a user runs it: a real subprocess where it matters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmkernel.cli import main

pytest.importorskip("llmkernel_mock")


def run(
    *args: str, cwd: Path, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmkernel.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=60,
    )


def test_chat_streams_offline_on_the_mock(tmp_path: Path) -> None:
    result = run("chat", "Hello there", "-v", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello there\n"
    assert "mock" in result.stderr and "offline mock provider" in result.stderr
    assert "cost $0.000000" in result.stderr and "total" in result.stderr


def test_chat_json_with_system_and_model(tmp_path: Path) -> None:
    result = run("chat", "Hi", "-m", "mock/chat", "-s", "be brief", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["provider"] == "mock" and data["model"] == "chat"
    assert data["text"] and data["finish_reason"] == "stop"
    assert data["usage"]["total_tokens"] == (
        data["usage"]["input_tokens"] + data["usage"]["output_tokens"]
    )


def test_chat_reads_stdin_and_no_stream(tmp_path: Path) -> None:
    result = run("chat", "--no-stream", cwd=tmp_path, stdin="from a pipe")
    assert result.returncode == 0 and result.stdout == "from a pipe\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["chat", "hi", "-m", "nope"], 'neither "provider/model" nor an alias'),
        (["chat", "hi", "-m", "zzz/x"], "install llmkernel-zzz"),
        (["chat", "   "], "the prompt is empty"),
        (["chat", "hi", "-o", "novalue"], "KEY=VALUE"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("llmkernel: error")]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_bad_config_file_names_key_and_file(tmp_path: Path) -> None:
    (tmp_path / "llmkernel.toml").write_text("[retry]\nattemps = 3\n")
    result = run("chat", "hi", cwd=tmp_path)
    assert result.returncode == 2
    assert "attemps" in result.stderr and "llmkernel.toml" in result.stderr
    assert "Traceback" not in result.stderr


def test_provider_failure_exits_1(tmp_path: Path) -> None:
    (tmp_path / "llmkernel.toml").write_text(
        "[providers.flaky]\ntype = 'mock'\nfailure_rate = 1.0\nerror_kinds = ['server']\n"
        "[retry]\nattempts = 2\ninitial_wait = 0\nmax_wait = 0\n"
    )
    result = run("chat", "hi", "-m", "flaky/chat", cwd=tmp_path)
    assert result.returncode == 1
    assert "simulated server" in result.stderr and "flaky/chat" in result.stderr


def test_models_lists_configured_models_aliases_and_plugins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "llmkernel.toml").write_text(
        "default_model = 'fast'\n[providers.sim]\ntype = 'mock'\nmodels = ['small', 'big']\n"
        "[models]\nfast = ['sim/small', 'mock/echo']\n"
    )
    assert main(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"model": "sim/small", "provider": "sim", "type": "mock", "plugin": "mock"} in data[
        "models"
    ]
    assert data["aliases"] == {"fast": ["sim/small", "mock/echo"]}
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "sim/big" in out and "fast = sim/small, mock/echo" in out


def test_version_and_help(tmp_path: Path) -> None:
    assert run("--version", cwd=tmp_path).stdout.startswith("llmkernel ")
    result = run(cwd=tmp_path)
    assert result.returncode == 0 and "chat" in result.stdout


def test_every_candidate_failing_exits_1(tmp_path: Path) -> None:
    (tmp_path / "llmkernel.toml").write_text(
        "[providers.one]\ntype = 'mock'\nfailure_rate = 1.0\nerror_kinds = ['server']\n"
        "[providers.two]\ntype = 'mock'\nfailure_rate = 1.0\nerror_kinds = ['overloaded']\n"
        "[models]\nboth = ['one/chat', 'two/chat']\n"
        "[retry]\nattempts = 1\n"
    )
    result = run("chat", "hi", "-m", "both", cwd=tmp_path)
    assert result.returncode == 1
    assert "every candidate for 'both' failed" in result.stderr
