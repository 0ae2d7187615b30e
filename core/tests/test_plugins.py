"""Plugin discovery through real entry points, enabling, disabling, broken plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llmkernel import Kernel

GOOD = """
from llmkernel import hookimpl

@hookimpl
def price_model(provider_type, model):
    return None
"""
BROKEN = "raise ImportError('missing dependency: frobnicate')\n"
WRONG_HOOK = """
from llmkernel import hookimpl

@hookimpl
def provide_chatt(config):
    return None
"""


def install(site: Path, name: str, source: str, version: str = "1.0") -> None:
    """A real (tiny) installed distribution with an entry point in our group."""
    package = f"lkt_{name}"
    (site / package).mkdir(parents=True)
    (site / package / "__init__.py").write_text(textwrap.dedent(source))
    info = site / f"llmkernel_test_{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: llmkernel-test-{name}\nVersion: {version}\n"
    )
    (info / "entry_points.txt").write_text(f"[llmkernel.plugins]\n{name} = {package}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    install(site, "good", GOOD)
    install(site, "broken", BROKEN)
    install(site, "wronghook", WRONG_HOOK)
    monkeypatch.syspath_prepend(str(site))
    return site


def by_name(kernel: Kernel) -> dict[str, object]:
    return {p.name: p for p in kernel.plugins}


def test_entry_points_load_and_a_broken_plugin_is_reported_and_skipped(site: Path) -> None:
    kernel = Kernel.from_config({})
    plugins = by_name(kernel)
    good = plugins["good"]
    assert good.status == "loaded"  # type: ignore[attr-defined]
    assert good.distribution == "llmkernel-test-good" and good.version == "1.0"  # type: ignore[attr-defined]
    assert good.hooks == ("price_model",)  # type: ignore[attr-defined]
    broken = plugins["broken"]
    assert broken.status == "failed"  # type: ignore[attr-defined]
    assert "missing dependency: frobnicate" in broken.error  # type: ignore[attr-defined]
    wrong = plugins["wronghook"]
    assert wrong.status == "failed"  # type: ignore[attr-defined]
    assert "provide_chatt" in wrong.error  # type: ignore[attr-defined]
    assert kernel.plugin_manager.has_plugin("good")
    assert not kernel.plugin_manager.has_plugin("wronghook")


def test_disabled_by_config(site: Path) -> None:
    kernel = Kernel.from_config({"plugins": {"disabled": ["good", "broken"]}})
    plugins = by_name(kernel)
    assert plugins["good"].status == "disabled"  # type: ignore[attr-defined]
    assert plugins["broken"].status == "disabled"  # type: ignore[attr-defined]
    assert not kernel.plugin_manager.has_plugin("good")


def test_allow_list_by_config(site: Path) -> None:
    kernel = Kernel.from_config({"plugins": {"enabled": ["good"]}})
    statuses = {n: p.status for n, p in by_name(kernel).items()}  # type: ignore[attr-defined]
    assert statuses["good"] == "loaded"
    assert statuses["broken"] == "disabled" and statuses["wronghook"] == "disabled"


def test_disabled_and_allow_list_by_env(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMKERNEL_DISABLE_PLUGINS", "good, wronghook")
    statuses = {n: p.status for n, p in by_name(Kernel.from_config({})).items()}  # type: ignore[attr-defined]
    assert statuses["good"] == "disabled" and statuses["wronghook"] == "disabled"
    assert statuses["broken"] == "failed"
    monkeypatch.delenv("LLMKERNEL_DISABLE_PLUGINS")
    monkeypatch.setenv("LLMKERNEL_LOAD_PLUGINS", "broken")
    statuses = {n: p.status for n, p in by_name(Kernel.from_config({})).items()}  # type: ignore[attr-defined]
    assert statuses["good"] == "disabled" and statuses["broken"] == "failed"


def test_each_kernel_has_its_own_plugin_manager(site: Path) -> None:
    one = Kernel.from_config({"plugins": {"disabled": ["good"]}})
    two = Kernel.from_config({})
    assert one.plugin_manager is not two.plugin_manager
    assert not one.plugin_manager.has_plugin("good") and two.plugin_manager.has_plugin("good")


def test_cli_plugins_lists_status(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main = pytest.importorskip("llmkernel_cli.shell", reason="the CLI is llmkernel-cli").main
    assert main(["plugins", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["good"]["status"] == "loaded"
    assert rows["good"]["distribution"] == "llmkernel-test-good"
    assert rows["broken"]["status"] == "failed"
    assert "frobnicate" in rows["broken"]["error"]
    assert main(["plugins"]) == 0
    table = capsys.readouterr().out
    assert "llmkernel-test-good 1.0" in table and "failed" in table


def test_plugin_commands_reach_the_cli(tmp_path: Path) -> None:
    pytest.importorskip("llmkernel_cli", reason="the CLI is llmkernel-cli")
    site = tmp_path / "cli-site"
    site.mkdir()
    install(
        site,
        "hello",
        """
        from llmkernel import hookimpl

        @hookimpl
        def register_commands(registry):
            registry.add("hello", help="greet",
                         arguments=lambda p: p.add_argument("name"),
                         run=lambda args, kernel: print("hello", args.name))
        """,
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-m", "llmkernel_cli", "hello", "world"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello world\n"


def test_entry_points_are_read_as_importlib_metadata_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel's own reader of entry points (no importlib.metadata at start):
    the first distribution of a name on sys.path wins, egg-info counts, comments and
    other groups are skipped, ``module:attr.path [extra]`` loads the attribute."""
    import importlib.metadata

    from llmkernel._entry_points import entry_points

    first, second = tmp_path / "first", tmp_path / "second"
    for site in (first, second):
        site.mkdir()
    (first / "lkt_pkg").mkdir()
    (first / "lkt_pkg" / "__init__.py").write_text("class Holder:\n    thing = 42\n")
    info = first / "LKT_Pkg-2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: LKT-Pkg\nVersion: 2.0\n\nBody\n")
    (info / "entry_points.txt").write_text(
        "# a comment\n[console_scripts]\nx = lkt_pkg:main\n\n"
        "[lkt.group]\nholder = lkt_pkg:Holder.thing [extra]\nmodule = lkt_pkg\n"
    )
    shadowed = second / "lkt_pkg-1.0.dist-info"  # same name, later on the path
    shadowed.mkdir()
    (shadowed / "METADATA").write_text("Metadata-Version: 2.1\nName: lkt-pkg\nVersion: 1.0\n")
    (shadowed / "entry_points.txt").write_text("[lkt.group]\nold = lkt_pkg:gone\n")
    egg = second / "lkt_egg.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text("Metadata-Version: 1.1\nName: lkt-egg\nVersion: 0.3\n")
    (egg / "entry_points.txt").write_text("[lkt.group]\negg = lkt_pkg\n")
    monkeypatch.syspath_prepend(str(second))
    monkeypatch.syspath_prepend(str(first))

    ours = {(e.name, e.value, e.dist, e.version) for e in entry_points("lkt.group")}
    theirs = {
        (e.name, e.value, e.dist.name, e.dist.version)  # type: ignore[union-attr]
        for e in importlib.metadata.entry_points(group="lkt.group")
    }
    assert (
        ours
        == theirs
        == {
            ("holder", "lkt_pkg:Holder.thing [extra]", "LKT-Pkg", "2.0"),
            ("module", "lkt_pkg", "LKT-Pkg", "2.0"),
            ("egg", "lkt_pkg", "lkt-egg", "0.3"),
        }
    )
    loaded = {e.name: e.load() for e in entry_points("lkt.group")}
    assert loaded["holder"] == 42
    assert loaded["module"].__name__ == "lkt_pkg"
