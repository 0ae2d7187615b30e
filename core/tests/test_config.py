"""Config: TOML file discovery, env vars, and strict refusal of bad input."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from llmkernel import Kernel
from llmkernel.config import Config
from llmkernel.errors import ConfigError
from llmkernel.testing.scripted import ScriptedPlugin

GOOD = """
default_model = "fast"

[plugins]
disabled = ["mock"]

[retry]
attempts = 2
timeout = 30

[providers.groq]
type = "scripted"

[providers.local]
type = "scripted"

[models]
fast = ["groq/llama-3.3-70b", "local/small"]
smart = "local/big"

[prices."groq/llama-3.3-70b"]
input = 0.59
output = "0.79"
"""


def write(tmp_path: Path, text: str, name: str = "llmkernel.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_full_file_loads(tmp_path: Path) -> None:
    config = Config.load(write(tmp_path, GOOD))
    assert config.default_model == "fast"
    assert config.retry.attempts == 2 and config.retry.timeout == 30.0
    assert config.models["fast"] == ("groq/llama-3.3-70b", "local/small")
    assert config.models["smart"] == ("local/big",)
    assert config.prices["groq/llama-3.3-70b"].input == Decimal("0.59")
    assert config.providers["groq"].type == "scripted"
    assert config.plugins.disabled == ["mock"]
    # the kernel refuses to disable a plugin that is not installed (a typo guard), and
    # the mock may not be (core's own tests run with core alone)
    runnable = Config.load(write(tmp_path, GOOD.replace('disabled = ["mock"]', "")))
    kernel = Kernel(runnable, plugins=[ScriptedPlugin()], entry_points=False)
    assert [c.qualified for c in kernel.models.resolve("fast")] == [
        "groq/llama-3.3-70b",
        "local/small",
    ]
    with kernel:
        response = kernel.chat(messages="hi")  # default_model = the "fast" group
    assert response.provider == "groq"


def test_found_in_the_working_directory_then_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, 'default_model = "here/m"\n')
    assert Config.load().default_model == "here/m"
    other = write(tmp_path, 'default_model = "env/m"\n', "other.toml")
    monkeypatch.setenv("LLMKERNEL_CONFIG", str(other))
    assert Config.load().default_model == "env/m"
    monkeypatch.setenv("LLMKERNEL_DEFAULT_MODEL", "override/m")
    assert Config.load().default_model == "override/m"


def test_user_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "xdg" / "llmkernel"
    home.mkdir(parents=True)
    (home / "llmkernel.toml").write_text('default_model = "user/m"\n')
    monkeypatch.chdir(tmp_path / "xdg")
    assert Config.load().default_model == "user/m"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("defualt_model = 'x/y'\n", r"unknown key 'defualt_model'.*did you mean 'default_model'"),
        ("[retry]\nattempt = 2\n", r"unknown key 'attempt' in \[retry\].*did you mean 'attempts'"),
        ("[retry]\nattempts = 'two'\n", r"'attempts' in \[retry\].*must be an integer"),
        ("[retry]\nattempts = 0\n", r"attempts must be at least 1"),
        ("[plugins]\ndisabled = 'mock'\n", r"'disabled' in \[plugins\].*must be a list"),
        ("[models]\nfast = 'no-slash'\n", r"'no-slash' is not \"provider/model\""),
        ("[models]\nfast = []\n", r"alias 'fast'"),
        ("[providers.x]\ntype = 'scripted'\napi_key = 'sk-123'\n", r"keys are never stored"),
        ("[prices.'a/b']\ninput = 1\n", r"missing required key 'output'"),
        ("[prices.'a/b']\ninput = 'cheap'\noutput = 1\n", r"not a number"),
        ("[prices.'a/b']\ninput = 1\noutput = 1\nouput = 2\n", r"unknown key 'ouput'"),
        ("providers = 3\n", r"'providers'.*must be a table"),
        ("this is not toml", r"not valid TOML"),
    ],
)
def test_bad_config_is_refused_naming_key_and_file(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        Config.load(path)
    assert str(path) in str(info.value) or "at least 1" in str(info.value)


def test_a_provider_option_typo_is_refused_at_startup(tmp_path: Path) -> None:
    path = write(tmp_path, "[providers.m]\ntype = 'mock'\nlatncy = 0.1\n")
    pytest.importorskip("llmkernel_mock")
    with pytest.raises(ConfigError, match=r"'latncy'.*\[providers\.m\].*did you mean 'latency'"):
        Kernel.from_config(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not found.*nope\.toml"):
        Config.load(tmp_path / "nope.toml")


def test_a_failed_load_loses_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    before = path.read_text()
    bad = write(tmp_path, GOOD + "\n[retry]\nattempts = 3\n", "bad.toml")
    with pytest.raises(ConfigError):
        Config.load(bad)
    assert path.read_text() == before
