"""Configuration: a TOML file plus environment variables, checked strictly.

Where the file comes from, first found wins: the path given, ``$LLMKERNEL_CONFIG``,
``./llmkernel.toml``, then the user's config dir (``$XDG_CONFIG_HOME/llmkernel/
llmkernel.toml``, ``~/.config/llmkernel/llmkernel.toml``; ``%APPDATA%`` on Windows).
No file is fine: the kernel then runs on the offline mock provider.

Secrets are never stored here: a provider names the environment variable holding its
key (``api_key_env = "OPENAI_API_KEY"``). Unknown keys, typos and wrong types are
refused with the key and the file named. See ``docs/config.md`` for every key.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import attrs

from llmkernel.errors import ConfigError
from llmkernel.options import parse_options
from llmkernel.types import ModelPrice

CONFIG_ENV = "LLMKERNEL_CONFIG"
DISABLE_ENV = "LLMKERNEL_DISABLE_PLUGINS"
LOAD_ENV = "LLMKERNEL_LOAD_PLUGINS"
DEFAULT_MODEL_ENV = "LLMKERNEL_DEFAULT_MODEL"
OFFLINE_DEFAULT_MODEL = "mock/echo"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TOP_KEYS = ("default_model", "plugins", "retry", "providers", "models", "prices", "plugin")


@attrs.frozen(kw_only=True)
class PluginsConfig:
    """``[plugins]``: ``enabled`` is an allow-list (empty: all); ``disabled`` a deny-list."""

    enabled: list[str] = attrs.field(factory=list)
    disabled: list[str] = attrs.field(factory=list)


@attrs.frozen(kw_only=True)
class RetryConfig:
    """``[retry]``: attempts per candidate, backoff in seconds, and the deadline for a
    whole call (every attempt on every candidate)."""

    attempts: int = 3
    initial_wait: float = 0.5
    max_wait: float = 10.0
    jitter: float = 1.0
    timeout: float = 600.0
    unhealthy_cooldown: float = 60.0

    def __attrs_post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")


@attrs.frozen(kw_only=True)
class ProviderSection:
    """One ``[providers.<name>]`` table: its ``type`` and the rest as options."""

    name: str
    type: str
    options: Mapping[str, Any]
    where: str


@attrs.frozen(kw_only=True)
class Config:
    """The whole validated configuration. ``source`` names where it came from."""

    source: str = "<defaults>"
    default_model: str | None = None
    plugins: PluginsConfig = attrs.field(factory=PluginsConfig)
    retry: RetryConfig = attrs.field(factory=RetryConfig)
    providers: Mapping[str, ProviderSection] = attrs.field(factory=dict)
    models: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    prices: Mapping[str, ModelPrice] = attrs.field(factory=dict)
    plugin: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)

    def plugin_settings(self, name: str) -> Mapping[str, Any]:
        """The ``[plugin.<name>]`` table, empty when absent."""
        return self.plugin.get(name, {})

    def where(self, table: str) -> str:
        return f"[{table}] in {self.source}"

    @classmethod
    def load(
        cls,
        source: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        *,
        env: Mapping[str, str] | None = None,
    ) -> Config:
        """Read ``source`` (a path, a dict, or ``None`` to search) plus the environment."""
        env = os.environ if env is None else env
        if isinstance(source, Mapping):
            return cls.from_mapping(source, source_name="<dict>", env=env)
        path = Path(source) if source is not None else find_config_file(env)
        if path is None:
            return cls.from_mapping({}, source_name="<defaults>", env=env)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
        return cls.from_mapping(data, source_name=str(path), env=env)

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, source_name: str, env: Mapping[str, str]
    ) -> Config:
        def where(table: str) -> str:
            return f"[{table}] in {source_name}"

        for key in data:
            if key not in _TOP_KEYS:
                import difflib

                close = difflib.get_close_matches(key, _TOP_KEYS, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"unknown key {key!r} at the top level of {source_name}{hint}")
        default_model = data.get("default_model")
        if default_model is not None and not isinstance(default_model, str):
            raise ConfigError(f"'default_model' in {source_name} must be a string")
        default_model = env.get(DEFAULT_MODEL_ENV) or default_model
        plugins = parse_options(
            PluginsConfig, _table(data, "plugins", source_name), where=where("plugins")
        )
        plugins = _plugins_from_env(plugins, env)
        retry = parse_options(RetryConfig, _table(data, "retry", source_name), where=where("retry"))
        providers = {
            name: _provider(name, table, where(f"providers.{name}"))
            for name, table in _table(data, "providers", source_name).items()
        }
        models = {
            name: _model_targets(name, value, where("models"))
            for name, value in _table(data, "models", source_name).items()
        }
        prices = {
            name: _price(name, table, where(f"prices.{name!r}"))
            for name, table in _table(data, "prices", source_name).items()
        }
        plugin_tables = _table(data, "plugin", source_name)
        for name, table in plugin_tables.items():
            if not isinstance(table, Mapping):
                raise ConfigError(f"[plugin.{name}] in {source_name} must be a table")
        return cls(
            source=source_name,
            default_model=default_model,
            plugins=plugins,
            retry=retry,
            providers=providers,
            models=models,
            prices=prices,
            plugin=plugin_tables,
        )


def find_config_file(env: Mapping[str, str]) -> Path | None:
    explicit = env.get(CONFIG_ENV)
    if explicit:
        return Path(explicit)
    local = Path("llmkernel.toml")
    if local.is_file():
        return local
    user = user_config_dir(env) / "llmkernel.toml"
    return user if user.is_file() else None


def user_config_dir(env: Mapping[str, str]) -> Path:
    if sys.platform == "win32" and env.get("APPDATA"):
        return Path(env["APPDATA"]) / "llmkernel"
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "llmkernel"


def _table(data: Mapping[str, Any], key: str, source: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key!r} in {source} must be a table, not {type(value).__name__}")
    return value


def _names(value: str) -> list[str]:
    return [n.strip() for n in value.split(",") if n.strip()]


def _plugins_from_env(plugins: PluginsConfig, env: Mapping[str, str]) -> PluginsConfig:
    disabled = list(plugins.disabled) + _names(env.get(DISABLE_ENV, ""))
    enabled = _names(env[LOAD_ENV]) if env.get(LOAD_ENV) else list(plugins.enabled)
    return PluginsConfig(enabled=enabled, disabled=disabled)


def _provider(name: str, table: Any, where: str) -> ProviderSection:
    if not _NAME.match(name):
        raise ConfigError(
            f"provider name {name!r} ({where}) may hold only letters, digits, '_', '.', '-'"
        )
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table")
    ptype = table.get("type", name)
    if not isinstance(ptype, str) or not ptype:
        raise ConfigError(f"'type' in {where} must be a provider type such as \"openai\"")
    if "api_key" in table:
        raise ConfigError(
            f"'api_key' in {where}: keys are never stored in config; set api_key_env to the "
            "name of the environment variable that holds the key"
        )
    options = {k: v for k, v in table.items() if k != "type"}
    return ProviderSection(name=name, type=ptype, options=options, where=where)


def _model_targets(name: str, value: Any, where: str) -> tuple[str, ...]:
    targets = [value] if isinstance(value, str) else value
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
        raise ConfigError(
            f'model alias {name!r} in {where} must be a "provider/model" string '
            "or a non-empty list of them"
        )
    for target in targets:
        if "/" not in target:
            raise ConfigError(
                f'model alias {name!r} in {where}: {target!r} is not "provider/model"'
            )
    return tuple(targets)


def _price(name: str, table: Any, where: str) -> ModelPrice:
    if "/" not in name:
        raise ConfigError(f'{where}: price keys are "provider/model", not {name!r}')
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table with input and output prices")
    known = ("input", "output", "cached_input", "cache_write", "reasoning", "currency", "source")
    for key in table:
        if key not in known:
            raise ConfigError(f"unknown key {key!r} in {where}; known keys: {', '.join(known)}")
    values: dict[str, Any] = {}
    for key in ("input", "output", "cached_input", "cache_write", "reasoning"):
        if key not in table:
            continue
        raw = table[key]
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise ConfigError(f"{key!r} in {where} must be a number (USD per million tokens)")
        try:
            values[key] = Decimal(str(raw))
        except InvalidOperation:
            raise ConfigError(f"{key!r} in {where} is not a number: {raw!r}") from None
        if values[key] < 0:
            raise ConfigError(f"{key!r} in {where} must not be negative")
    for key in ("input", "output"):
        if key not in values:
            raise ConfigError(f"missing required key {key!r} in {where}")
    return ModelPrice(
        **values,
        currency=str(table.get("currency", "USD")),
        source=str(table.get("source", "config")),
    )
