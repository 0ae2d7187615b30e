"""Every test runs in its own directory, away from the developer's config, plugin
env vars and data (the root conftest points the XDG directories at tmp_path)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _no_env_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in (
        "LLMKERNEL_CONFIG",
        "LLMKERNEL_DISABLE_PLUGINS",
        "LLMKERNEL_LOAD_PLUGINS",
        "LLMKERNEL_DEFAULT_MODEL",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


def _entry_point() -> list[str]:
    """The installed ``llmkernel`` script, as a user runs it."""
    import sys

    script = Path(sys.executable).with_name("llmkernel")
    return [str(script)] if script.exists() else [sys.executable, "-m", "llmkernel_cli"]


class CLI:
    """Runs ``llmkernel ARGS`` in a subprocess, in the test's directory and env."""

    command = _entry_point()

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def __call__(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*self.command, *args],
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            text=True,
            cwd=self.cwd,
            env={**os.environ, **(env or {})},
            check=False,
            timeout=120,
        )
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def ok(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        result = self(*args, **kwargs)
        assert result.returncode == 0, result.stderr
        return result


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    return CLI(tmp_path)
