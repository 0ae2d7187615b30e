"""A user's install: ``core`` and one plugin alone in a fresh environment.

Built with ``uv pip install --offline`` from uv's cache (filled by ``uv run``), so no
network is used; skipped where uv is not on PATH.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UV = shutil.which("uv")
pytestmark = pytest.mark.skipif(UV is None, reason="uv is not installed")


def sh(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=cwd, check=False, timeout=300
    )


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("fresh")
    made = sh(UV or "uv", "venv", "--python", sys.executable, where / "venv", cwd=where)
    assert made.returncode == 0, made.stderr
    python = where / "venv" / "bin" / "python"
    installed = sh(
        UV or "uv",
        "pip",
        "install",
        "--offline",
        "--python",
        python,
        ROOT / "core",
        ROOT / "plugins" / "mock",
        cwd=where,
    )
    if installed.returncode != 0 and "offline" in installed.stderr.lower():
        pytest.skip(f"uv's cache lacks a dependency offline: {installed.stderr[-300:]}")
    assert installed.returncode == 0, installed.stderr
    return where / "venv"


def test_core_and_mock_alone_give_a_working_kernel(venv: Path) -> None:
    cli = venv / "bin" / "llmkernel"
    chat = sh(cli, "chat", "hello from a fresh venv", cwd=venv)
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout == "hello from a fresh venv\n"
    listed = sh(cli, "plugins", "--json", cwd=venv)
    names = {p["name"]: p for p in json.loads(listed.stdout)}
    assert set(names) == {"mock"}, "a package not installed is not listed"
    assert names["mock"]["distribution"] == "llmkernel-mock"
    assert names["mock"]["status"] == "loaded"


def test_a_provider_not_installed_is_named(venv: Path) -> None:
    result = sh(venv / "bin" / "llmkernel", "chat", "hi", "-m", "openai/gpt-4o-mini", cwd=venv)
    assert result.returncode == 2
    assert "install llmkernel-openai" in result.stderr
