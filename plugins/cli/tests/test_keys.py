"""``llmkernel keys``: a key typed at a prompt that does not echo it, kept in a 0600
file, listed by name only, used by an HTTP provider whose variable is unset (checked
at a fake upstream), and never printed."""

from __future__ import annotations

import json
import os
import pty
import select
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

SECRET = "sk-test-0123456789abcdef"


def keys_file() -> Path:
    return Path(os.environ["XDG_CONFIG_HOME"]) / "llmkernel" / "keys.json"


def _read_until(fd: int, marker: bytes, timeout: float = 30.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_set_prompts_without_echo_and_stores_0600(cli: Any, tmp_path: Path) -> None:
    """Through a real terminal: getpass turns echo off, so the key never shows."""
    parent, child = pty.openpty()
    proc = subprocess.Popen(
        [*cli.command, "keys", "set", "openai", "--file"],
        stdin=child,
        stdout=child,
        stderr=child,
        cwd=tmp_path,
        env=dict(os.environ),
        close_fds=True,
    )
    os.close(child)
    try:
        shown = _read_until(parent, b"Enter key for openai: ")
        assert b"Enter key for openai: " in shown, shown
        os.write(parent, SECRET.encode() + b"\n")
        shown += _read_until(parent, b"stored the key")
        assert proc.wait(timeout=60) == 0, shown
    finally:
        os.close(parent)
        if proc.poll() is None:
            proc.kill()
    assert SECRET.encode() not in shown, "the terminal echoed the key"
    assert b"stored the key for 'openai'" in shown
    path = keys_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"openai": SECRET}


def test_list_path_remove_and_stdin(cli: Any) -> None:
    cli.ok("keys", "set", "groq", "--file", stdin=SECRET + "\n")
    cli.ok("keys", "set", "openai", "--file", stdin="sk-other\n")
    listed = cli.ok("keys", "list")
    assert listed.stdout == "groq\nopenai\n"
    assert cli.ok("keys").stdout == listed.stdout
    assert cli.ok("keys", "path").stdout.strip() == str(keys_file())
    cli.ok("keys", "remove", "groq")
    assert json.loads(keys_file().read_text()) == {"openai": "sk-other"}
    assert stat.S_IMODE(keys_file().stat().st_mode) == 0o600, "rewritten 0600 too"
    missing = cli("keys", "remove", "groq")
    assert missing.returncode == 2 and "no stored key for 'groq'" in missing.stderr
    empty = cli("keys", "set", "x", "--file", stdin="\n")
    assert empty.returncode == 2 and "the key is empty" in empty.stderr


def test_a_provider_uses_the_stored_key_when_its_variable_is_unset(
    cli: Any, tmp_path: Path
) -> None:
    pytest.importorskip("llmkernel_openai")
    from llmkernel_http.testing.fake_server import FakeResponse, FakeServer

    answer = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    unauthorized = FakeResponse.json_body(
        {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                   "code": "invalid_api_key"}},
        status=401,
    )  # fmt: skip
    with FakeServer() as server:
        server.expect("POST", "/v1/chat/completions", FakeResponse.json_body(answer), unauthorized)
        (tmp_path / "llmkernel.toml").write_text(
            f"[providers.work]\ntype = 'openai'\nbase_url = '{server.url}/v1'\n"
            "api_key_env = 'WORK_KEY_UNSET'\n"
        )
        missing = cli("chat", "hi", "-m", "work/gpt-4o-mini")
        assert missing.returncode == 1
        assert "set the environment variable WORK_KEY_UNSET" in missing.stderr
        assert "llmkernel keys set work" in missing.stderr
        cli.ok("keys", "set", "work", "--file", stdin=SECRET + "\n")
        assert cli.ok("chat", "hi", "-m", "work/gpt-4o-mini").stdout == "hi\n"
        assert server.requests[0].headers["authorization"] == f"Bearer {SECRET}"
        refused = cli("chat", "again", "-m", "work/gpt-4o-mini", "-vv")
        assert refused.returncode == 1
        assert SECRET not in refused.stderr + refused.stdout, "never in errors or logs"
        env = {"WORK_KEY_UNSET": "sk-from-env"}
        cli("chat", "hi", "-m", "work/gpt-4o-mini", env=env)
        assert server.requests[-1].headers["authorization"] == "Bearer sk-from-env"
    for path in tmp_path.rglob("*.db"):
        assert SECRET.encode() not in path.read_bytes(), path
