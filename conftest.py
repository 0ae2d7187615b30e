"""Every test, in every package: no test touches the developer's own data, config,
cache or state directories (the ledger, the cache, config and the rate limiter's
file default to XDG places under ``$HOME``).

For the whole session, before any fixture runs (a session-scoped fixture that
starts a server copies ``os.environ`` for it), ``HOME`` and every ``XDG_*_HOME``
point into one private temporary directory, removed at the end; each test then gets
XDG directories of its own under its ``tmp_path``. ``tests/test_user_dirs.py``
checks that the paths the plugins resolve, in this process and in the servers the
tests start, are under it. uv's own cache is a tool's, not llmkernel's: it keeps its
place (``UV_CACHE_DIR``), which ``tests/test_install.py`` installs from offline.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

XDG = ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME")
PRIVATE_ROOT_ENV = "PYTEST_LLMKERNEL_PRIVATE_HOME"  # where the session's private home is
_saved: dict[str, str | None] = {}


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(PRIVATE_ROOT_ENV):
        return  # a pytest run inside a test run: the outer session's dirs hold
    real_home = Path.home()
    uv_cache = os.environ.get("UV_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or real_home / ".cache") / "uv"
    )
    root = Path(tempfile.mkdtemp(prefix="llmkernel-tests-"))
    private = {
        "HOME": root / "home",
        "XDG_DATA_HOME": root / "home" / ".local" / "share",
        "XDG_CONFIG_HOME": root / "home" / ".config",
        "XDG_CACHE_HOME": root / "home" / ".cache",
        "XDG_STATE_HOME": root / "home" / ".local" / "state",
    }
    for name, path in private.items():
        path.mkdir(parents=True, exist_ok=True)
        _saved[name] = os.environ.get(name)
        os.environ[name] = str(path)
    for name, value in ((PRIVATE_ROOT_ENV, str(root)), ("UV_CACHE_DIR", uv_cache)):
        _saved[name] = os.environ.get(name)
        os.environ[name] = value


def pytest_unconfigure(config: pytest.Config) -> None:
    root = os.environ.get(PRIVATE_ROOT_ENV)
    if not _saved or not root:
        return
    for name, value in _saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _saved.clear()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def _private_xdg_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))  # stored keys too
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
