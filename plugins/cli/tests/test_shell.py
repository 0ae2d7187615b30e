"""The CLI shell as a user runs it (a real subprocess where it matters): global
options, errors and exit codes, the `models` and `plugins` commands, and what it
says of a first-party command whose plugin is missing. `chat` is llmkernel-cli's
(plugins/cli/tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmkernel_cli.shell import main

pytest.importorskip("llmkernel_mock")


def _entry_point() -> list[str]:
    """The installed ``llmkernel`` script, as a user runs it."""
    script = Path(sys.executable).with_name("llmkernel")
    return [str(script)] if script.exists() else [sys.executable, "-m", "llmkernel_cli"]


LLMKERNEL = _entry_point()


def run(
    *args: str, cwd: Path, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LLMKERNEL, *args],
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=60,
    )


def test_version_and_help(tmp_path: Path) -> None:
    assert run("--version", cwd=tmp_path).stdout.startswith("llmkernel ")
    result = run(cwd=tmp_path)
    assert result.returncode == 0 and "chat" in result.stdout and "models" in result.stdout


def test_bad_config_file_names_key_and_file(tmp_path: Path) -> None:
    (tmp_path / "llmkernel.toml").write_text("[retry]\nattemps = 3\n")
    result = run("models", cwd=tmp_path)
    assert result.returncode == 2
    assert "attemps" in result.stderr and "llmkernel.toml" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_config_file_is_one_line(tmp_path: Path) -> None:
    result = run("models", "-c", "missing.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "llmkernel: error: config file not found: missing.toml"


def test_a_first_party_command_whose_plugin_is_disabled_says_so(tmp_path: Path) -> None:
    result = run("chat", "hi", cwd=tmp_path, env={"LLMKERNEL_DISABLE_PLUGINS": "cli"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "llmkernel: error: the 'chat' command comes with llmkernel-cli, but plugin 'cli' "
        "is disabled by LLMKERNEL_DISABLE_PLUGINS"
    )


def test_an_unknown_command_is_argparses_error(tmp_path: Path) -> None:
    result = run("frobnicate", cwd=tmp_path)
    assert result.returncode == 2 and "invalid choice: 'frobnicate'" in result.stderr


def test_models_lists_configured_models_aliases_and_plugins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "llmkernel.toml").write_text(
        "default_model = 'fast'\n[providers.sim]\ntype = 'mock'\nmodels = ['small', 'big']\n"
        "[models]\nfast = ['sim/small', 'mock/echo']\n"
    )
    assert main(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {
        "model": "sim/small",
        "provider": "sim",
        "type": "mock",
        "plugin": "mock",
        "status": "configured",
        "note": None,
    } in data["models"]
    assert data["aliases"] == {"fast": ["sim/small", "mock/echo"]}
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "sim/big" in out and "fast = sim/small, mock/echo" in out


# ----------------------------------------------------------------- diagnostics

GROQ = (
    "[providers.groq]\ntype = 'openai'\nbase_url = 'http://127.0.0.1:9/v1'\n"
    "api_key_env = 'GROQ_KEY'\n"
)


def test_plugins_and_models_work_when_a_providers_plugin_is_disabled(tmp_path: Path) -> None:
    pytest.importorskip("llmkernel_openai")
    (tmp_path / "llmkernel.toml").write_text(GROQ)
    env = {"LLMKERNEL_DISABLE_PLUGINS": "openai"}
    plugins = run("plugins", cwd=tmp_path, env=env)
    assert plugins.returncode == 0, plugins.stderr
    assert "mock" in plugins.stdout
    assert "disabled by LLMKERNEL_DISABLE_PLUGINS" in plugins.stdout
    assert "groq: plugin 'openai' is disabled by LLMKERNEL_DISABLE_PLUGINS" in plugins.stdout
    models = run("models", "--json", cwd=tmp_path, env=env)
    assert models.returncode == 0, models.stderr
    rows = {r["model"]: r for r in json.loads(models.stdout)["models"]}
    assert rows["groq/*"]["status"] == "unavailable"
    assert "disabled by LLMKERNEL_DISABLE_PLUGINS" in rows["groq/*"]["note"]
    assert rows["mock/echo"]["status"] == "installed"


def test_a_plugin_that_fails_to_import_is_named_with_its_error(tmp_path: Path) -> None:
    """A plugin whose import fails: `plugins` shows the error (what `chat` says of it:
    plugins/cli/tests/test_chat.py)."""
    site = tmp_path / "site"
    (site / "llmkernel_broken").mkdir(parents=True)
    (site / "llmkernel_broken" / "__init__.py").write_text("")
    (site / "llmkernel_broken" / "plugin.py").write_text("import frobnicate_missing_dep\n")
    dist = site / "llmkernel_broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: llmkernel-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[llmkernel.plugins]\nbroken = llmkernel_broken.plugin\n"
    )
    (tmp_path / "llmkernel.toml").write_text("[providers.b]\ntype = 'broken'\n")
    env = {"PYTHONPATH": str(site)}
    plugins = run("plugins", cwd=tmp_path, env=env)
    assert plugins.returncode == 0, plugins.stderr
    line = next(x for x in plugins.stdout.splitlines() if x.startswith("broken"))
    assert "failed" in line and "frobnicate_missing_dep" in line
    assert "b: plugin 'broken' failed to import: ModuleNotFoundError" in plugins.stdout


def test_models_lists_every_installed_provider_without_mentioning_the_mock(
    tmp_path: Path,
) -> None:
    result = run("models", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "mock/echo" in result.stdout and "installed" in result.stdout
    assert "default model: none configured" in result.stdout
    assert result.stderr == "", "no warning about the offline mock when no call is made"


def test_models_remote_asks_the_provider(tmp_path: Path) -> None:
    pytest.importorskip("llmkernel_openai")
    fake = pytest.importorskip("llmkernel_http.testing.fake_server")
    FakeServer, FakeResponse = fake.FakeServer, fake.FakeResponse
    with FakeServer() as server:
        server.expect(
            "GET",
            "/v1/models",
            FakeResponse.json_body(
                {
                    "object": "list",
                    "data": [
                        {"id": "served-a", "object": "model", "created": 1, "owned_by": "x"},
                        {"id": "served-b", "object": "model", "created": 1, "owned_by": "x"},
                    ],
                }
            ),
        )
        (tmp_path / "llmkernel.toml").write_text(
            f"[providers.fake]\ntype = 'openai'\nbase_url = '{server.url}/v1'\n"
            "api_key_env = 'FAKE_KEY'\n"
        )
        result = run(
            "models", "--remote", "-p", "fake", "--json", cwd=tmp_path, env={"FAKE_KEY": "k"}
        )
    assert result.returncode == 0, result.stderr
    models = [r["model"] for r in json.loads(result.stdout)["models"]]
    assert models == ["fake/served-a", "fake/served-b"]
