"""`llmkernel stats --url` shows a running gateway's statistics (with llmkernel-routing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Gateway, base_config
from .test_sdk import client

pytest.importorskip("llmkernel_routing")
HI = [{"role": "user", "content": "hi"}]


def test_stats_of_a_running_gateway(tmp_path: Path) -> None:
    server = Gateway(base_config("http://127.0.0.1:9"), tmp_path)
    try:
        sdk = client(server, "unused")
        for _ in range(3):
            sdk.chat.completions.create(model="mock/echo", messages=HI)
        command = [sys.executable, "-m", "llmkernel_cli", "stats", "--url", server.url]
        table = subprocess.run(
            command, check=False, capture_output=True, text=True, cwd=tmp_path, timeout=60
        )
        as_json = subprocess.run(
            [*command, "--json"],
            check=False,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
    finally:
        server.stop()
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith("mock/echo"))
    assert row.split()[1] == "3", table.stdout  # requests
    data = json.loads(as_json.stdout)
    assert data["deployments"]["mock/echo"]["requests"] == 3
