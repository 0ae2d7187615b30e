"""Keep tests away from the developer's own config and plugin env vars."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog


@pytest.fixture(autouse=True)
def _no_env_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never read the developer's own config or plugin env vars."""
    for var in (
        "LLMKERNEL_CONFIG",
        "LLMKERNEL_DISABLE_PLUGINS",
        "LLMKERNEL_LOAD_PLUGINS",
        "LLMKERNEL_DEFAULT_MODEL",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """The CLI configures structlog; in-process CLI tests must not leak that."""
    yield
    structlog.reset_defaults()
