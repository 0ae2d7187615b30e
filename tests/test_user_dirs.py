"""No test touches the developer's own data, config, cache or state directories:
the root ``conftest.py`` gives the whole session a private ``HOME`` and XDG
directories before any fixture runs, and every path a plugin resolves by default,
here and in a server a test starts, is under it."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

PRIVATE_ROOT_ENV = "PYTEST_LLMKERNEL_PRIVATE_HOME"  # set by the root conftest.py
XDG = ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME")

RESOLVE = """
import json
from pathlib import Path
from llmkernel.config import user_config_dir
from llmkernel_batch.store import default_path as batch
from llmkernel_cache.settings import default_path as cache
from llmkernel_ledger.settings import default_path as ledger
from llmkernel_ratelimit.filestore import default_path as ratelimit
import os
print(json.dumps({
    "home": str(Path.home()),
    "config": str(user_config_dir(os.environ)),
    "ledger": ledger(),
    "cache": cache(),
    "batch": batch(),
    "ratelimit": str(ratelimit()),
}))
"""


def _real_home() -> Path:
    return Path(pwd.getpwuid(os.getuid()).pw_dir)


def _resolved(env: dict[str, str] | None = None) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", RESOLVE], capture_output=True, text=True, env=env, check=True
    )
    return dict(json.loads(done.stdout))


@pytest.fixture(scope="session")
def private_root() -> Path:
    root = os.environ.get(PRIVATE_ROOT_ENV)
    assert root, "the root conftest did not set up the session's private home"
    return Path(root).resolve()


def test_the_session_has_a_private_home_set_before_any_fixture(private_root: Path) -> None:
    assert not private_root.is_relative_to(_real_home())
    assert Path.home().resolve().is_relative_to(private_root)


def test_paths_the_plugins_resolve_in_a_server_the_tests_start_are_private(
    private_root: Path,
) -> None:
    """A session fixture's subprocess gets ``os.environ`` as it was before any test's
    own fixtures (the gateway's shared server): those paths are the session's."""
    session_env = dict(os.environ)
    for name in XDG:  # as at session setup, before this test's own XDG dirs
        session_env[name] = str(private_root / "home" / _XDG_PLACES[name])
    for what, path in _resolved(session_env).items():
        assert Path(path).resolve().is_relative_to(private_root), (what, path)
        assert not Path(path).resolve().is_relative_to(_real_home()), (what, path)


def test_paths_the_plugins_resolve_in_a_test_are_its_own(tmp_path: Path) -> None:
    for what, path in _resolved().items():
        if what == "home":
            continue
        assert Path(path).is_relative_to(tmp_path), (what, path)


_XDG_PLACES = {
    "XDG_DATA_HOME": ".local/share",
    "XDG_CONFIG_HOME": ".config",
    "XDG_CACHE_HOME": ".cache",
    "XDG_STATE_HOME": ".local/state",
}
