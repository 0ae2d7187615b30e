"""A user's install: ``core``, the CLI and one provider alone in a fresh environment.

Built with ``uv pip install --offline`` from uv's cache, so the test uses no network.
``uv sync`` (what ``uv run`` does) installs from the lock file and leaves the cache
without what the resolver needs (index pages, the hatchling build backend): ``.ci/run``
warms it with the same install, online, into a throwaway venv. Where the cache is
cold, the test is skipped with the way to warm it, except under CI (``$CI`` set),
where a cold cache is a failure. Skipped where uv is not on PATH.
"""

from __future__ import annotations

import json
import os
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
        ROOT / "plugins" / "cli",
        ROOT / "plugins" / "mock",
        cwd=where,
    )
    if installed.returncode != 0 and _cold_cache(installed.stderr):
        reason = (
            "uv's cache lacks what an offline install of ./core ./plugins/cli ./plugins/mock "
            "needs; warm it once with `uv venv /tmp/warm && uv pip install --python "
            "/tmp/warm/bin/python ./core ./plugins/cli ./plugins/mock` (as .ci/run does). "
            "uv said: " + _why(installed.stderr)
        )
        if os.environ.get("CI"):
            pytest.fail(f"under CI the cache must be warm: {reason}")
        pytest.skip(reason)
    assert installed.returncode == 0, installed.stderr
    return where / "venv"


def _cold_cache(stderr: str) -> bool:
    """uv could not resolve or fetch something because it was told to stay offline."""
    text = stderr.lower()
    return any(
        words in text for words in ("not found in the cache", "network was disabled", "offline")
    )


def _why(stderr: str) -> str:
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    missing = [line for line in lines if "not found in the cache" in line]
    return " ".join(missing[:1] or lines[-1:])


def test_core_and_mock_alone_give_a_working_kernel(venv: Path) -> None:
    cli = venv / "bin" / "llmkernel"
    chat = sh(cli, "chat", "hello from a fresh venv", cwd=venv)
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout == "hello from a fresh venv\n"
    listed = sh(cli, "plugins", "--json", cwd=venv)
    names = {p["name"]: p for p in json.loads(listed.stdout)}
    assert set(names) == {"cli", "mock"}, "a package not installed is not listed"
    assert names["mock"]["distribution"] == "llmkernel-mock"
    assert names["mock"]["status"] == "loaded"


def test_a_provider_not_installed_is_named(venv: Path) -> None:
    result = sh(venv / "bin" / "llmkernel", "chat", "hi", "-m", "openai/gpt-4o-mini", cwd=venv)
    assert result.returncode == 2
    assert "install llmkernel-openai" in result.stderr


def test_the_kernel_alone_is_a_library_without_a_command(venv: Path) -> None:
    """The last test of the module: it takes llmkernel-cli out of the shared venv. The
    kernel is a library (the ``llmkernel`` command is llmkernel-cli's), and still
    answers on the offline mock."""
    python = venv / "bin" / "python"
    removed = sh(UV or "uv", "pip", "uninstall", "--python", python, "llmkernel-cli", cwd=venv)
    assert removed.returncode == 0, removed.stderr
    assert not (venv / "bin" / "llmkernel").exists()
    code = (
        "from llmkernel import Kernel\nprint(Kernel.from_config({}).chat('mock/echo', 'hi').text)"
    )
    result = sh(python, "-c", code, cwd=venv)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\n"
