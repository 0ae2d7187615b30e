"""A strategy from a package installed separately (its own pyproject and entry
point, built and installed in the test) is found and chosen by name; with two
installed, the config decides."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llmkernel import Kernel
from llmkernel.testing.scripted import ScriptedPlugin

PYPROJECT = """\
[project]
name = "{dist}"
version = "0.0.1"
requires-python = ">=3.11"
dependencies = []

[project.entry-points."llmkernel.plugins"]
{entry} = "{module}"

[build-system]
requires = ["hatchling>=1.25"]
build-backend = "hatchling.build"

[tool.hatch.build.targets.wheel]
packages = ["{module}"]
"""

MODULE = '''\
from llmkernel import hookimpl


class Pick:
    """Puts the configured provider first (or reverses the list)."""

    def __init__(self, first):
        self.first = first

    def select(self, ctx, candidates):
        chain = list(candidates)
        if self.first is None:
            return chain[::-1]
        return sorted(chain, key=lambda c: c.provider != self.first)


@hookimpl
def register_strategies(kernel, registry):
    registry.add("{name}", lambda kernel, settings: Pick(settings.get("first", {first!r})))
'''


def _write_package(root: Path, dist: str, module: str, name: str, first: str | None) -> Path:
    package = root / dist
    (package / module).mkdir(parents=True)
    (package / "pyproject.toml").write_text(PYPROJECT.format(dist=dist, entry=name, module=module))
    (package / module / "__init__.py").write_text(MODULE.format(name=name, first=first))
    return package


def _install(packages: list[Path], target: Path) -> None:
    uv = shutil.which("uv")
    if uv is not None:
        command = [uv, "pip", "install", "--quiet", "--no-deps", "--target", str(target)]
    else:
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
        ]
    result = subprocess.run(
        [*command, *map(str, packages)], check=False, capture_output=True, text=True, timeout=180
    )
    if result.returncode != 0:
        pytest.skip(f"cannot build and install a test package here: {result.stderr[-400:]}")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("third-party")
    packages = [
        _write_package(root, "thirdparty-strategy-alpha", "tp_alpha", "tp-alpha", "c"),
        _write_package(root, "thirdparty-strategy-beta", "tp_beta", "tp-beta", None),
    ]
    site = root / "site"
    _install(packages, site)
    assert (site / "tp_alpha" / "__init__.py").is_file()
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        for name in ("tp_alpha", "tp_beta"):
            sys.modules.pop(name, None)
        importlib.invalidate_caches()


def _kernel(strategy: str | None, **settings) -> Kernel:
    config: dict = {
        "providers": {n: {"type": "scripted"} for n in "abc"},
        "models": {"group": ["a/m1", "b/m1", "c/m1"]},
    }
    if strategy is not None:
        config["routing"] = {"strategy": strategy, **({strategy: settings} if settings else {})}
    return Kernel.from_config(config, plugins=[ScriptedPlugin()])


def test_found_by_name_and_the_config_decides(installed):
    with _kernel(None) as kernel:
        loaded = {p.name for p in kernel.plugins if p.status == "loaded"}
        assert {"tp-alpha", "tp-beta"} <= loaded
        assert kernel.chat("group", "hi").provider == "a"  # priority: config order
    with _kernel("tp-alpha") as kernel:
        assert kernel.chat("group", "hi").provider == "c"
    with _kernel("tp-beta") as kernel:
        assert kernel.chat("group", "hi").provider == "c"  # reversed
        assert kernel.strategy.select(None, kernel.models.resolve("group"))[0].provider == "c"
    with _kernel("tp-alpha", first="b") as kernel:  # [routing.tp-alpha] settings reach it
        assert kernel.chat("group", "hi").provider == "b"


def test_an_unknown_strategy_name_is_refused_naming_it(installed):
    from llmkernel.errors import ConfigError

    with pytest.raises(ConfigError, match="tp-gamma"):
        _kernel("tp-gamma")
