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
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

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
_TOP_KEYS = (
    "default_model",
    "plugins",
    "retry",
    "routing",
    "providers",
    "models",
    "prices",
    "plugin",
    "redis",
)
#: ``[redis] url`` from the environment (the ``llmkernel-redis`` plugin reads ``[redis]``)
REDIS_URL_ENV = "LLMKERNEL_REDIS_URL"
#: Error kinds ``[routing.fallback]`` takes a rule for (``ProviderError.kind``).
ERROR_KINDS = (
    "authentication",
    "permission",
    "not_found",
    "rate_limit",
    "quota",
    "invalid_request",
    "context_window",
    "content_filter",
    "server",
    "overloaded",
    "timeout",
    "network",
    "malformed_response",
    "provider",
)
DEFAULT_STRATEGY = "priority"


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
    attempt_timeout: float | None = None
    unhealthy_cooldown: float = 60.0

    def __attrs_post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        if self.attempt_timeout is not None and self.attempt_timeout <= 0:
            raise ValueError("attempt_timeout must be positive")


Rule = Literal["retry", "next", "raise"]


@attrs.frozen(kw_only=True)
class FallbackConfig:
    """``[routing.fallback]``: per error kind, ``retry`` (the same candidate, then
    the next), ``next`` (the next candidate at once) or ``raise``; attempts per
    candidate (default ``[retry] attempts``) and in all."""

    attempts_per_candidate: int | None = None
    max_attempts: int = 10
    rules: Mapping[str, Rule] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if self.attempts_per_candidate is not None and self.attempts_per_candidate < 1:
            raise ValueError("attempts_per_candidate must be at least 1")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")


@attrs.frozen(kw_only=True)
class RoutingConfig:
    """``[routing]``: the strategy by name, its settings (``[routing.<name>]``), the
    fallback rules, and whether a model string may name a provider the config does
    not (``implicit_providers``; a gateway turns it off)."""

    strategy: str = DEFAULT_STRATEGY
    implicit_providers: bool = True
    fallback: FallbackConfig = attrs.field(factory=FallbackConfig)
    settings: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class ModelTarget:
    """One target of a ``[models]`` alias: ``provider/model`` plus its ``tags``
    (``weight``, ``tier``... from a table target), handed to strategies."""

    target: str
    tags: Mapping[str, Any] = attrs.field(factory=dict)


#: what keeps a caller on one variant of an experiment: the first of these metadata keys
EXPERIMENT_BY = ("session", "tenant", "key", "user")


@attrs.frozen(kw_only=True)
class Experiment:
    """``[models.NAME] variants = {a = "provider/model", b = "alias"}, split = {a =
    0.9, b = 0.1}``: a model name whose calls are split between variants, each
    caller kept on one by a stable hash of the first of ``by`` (request metadata
    keys; default ``session``, ``tenant``, ``key``, ``user``) it has."""

    name: str
    variants: Mapping[str, str]
    split: Mapping[str, float]
    by: tuple[str, ...] = ("session", "tenant", "key", "user")  # as EXPERIMENT_BY

    def choose(self, metadata: Mapping[str, str], fallback: str) -> tuple[str, str]:
        """``(variant, model string)`` for a caller (``fallback``, the call's id,
        when its metadata names none of ``by``: that call alone is assigned)."""
        import hashlib

        who = next((metadata[k] for k in self.by if metadata.get(k)), fallback)
        digest = hashlib.sha256(f"{self.name}\x00{who}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64
        edge = 0.0
        for variant in sorted(self.split):
            edge += self.split[variant]
            if point < edge:
                return variant, self.variants[variant]
        last = max(self.split)  # rounding: the point fell past the last edge
        return last, self.variants[last]


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
    routing: RoutingConfig = attrs.field(factory=RoutingConfig)
    providers: Mapping[str, ProviderSection] = attrs.field(factory=dict)
    #: alias -> its targets as "provider/model" strings, in order
    models: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    #: alias -> its targets with their tags (same order as ``models``)
    model_targets: Mapping[str, tuple[ModelTarget, ...]] = attrs.field(factory=dict)
    prices: Mapping[str, ModelPrice] = attrs.field(factory=dict)
    plugin: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    #: ``[redis]``: shared state for every stateful plugin, read and validated by the
    #: ``llmkernel-redis`` plugin (``$LLMKERNEL_REDIS_URL`` sets ``url``); empty: off
    redis: Mapping[str, Any] = attrs.field(factory=dict)
    #: ``[models.NAME] variants = {...}, split = {...}``: A/B tests by name
    experiments: Mapping[str, Experiment] = attrs.field(factory=dict)

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
        import tomllib  # only for a file: a dict config goes without it

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
        routing = _routing(_table(data, "routing", source_name), where)
        providers = {
            name: _provider(name, table, where(f"providers.{name}"))
            for name, table in _table(data, "providers", source_name).items()
        }
        model_tables = _table(data, "models", source_name)
        experiments = {
            name: _experiment(name, value, where("models"))
            for name, value in model_tables.items()
            if isinstance(value, Mapping) and "variants" in value
        }
        model_targets = {
            name: _model_targets(name, value, where("models"))
            for name, value in model_tables.items()
            if name not in experiments
        }
        models = {name: tuple(t.target for t in ts) for name, ts in model_targets.items()}
        prices = {
            name: _price(name, table, where(f"prices.{name!r}"))
            for name, table in _table(data, "prices", source_name).items()
        }
        plugin_tables = _table(data, "plugin", source_name)
        for name, table in plugin_tables.items():
            if not isinstance(table, Mapping):
                raise ConfigError(f"[plugin.{name}] in {source_name} must be a table")
        redis = dict(_table(data, "redis", source_name))
        if env.get(REDIS_URL_ENV):
            redis["url"] = env[REDIS_URL_ENV]
        return cls(
            source=source_name,
            default_model=default_model,
            plugins=plugins,
            retry=retry,
            routing=routing,
            providers=providers,
            models=models,
            model_targets=model_targets,
            prices=prices,
            plugin=plugin_tables,
            redis=redis,
            experiments=experiments,
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


def _model_targets(name: str, value: Any, where: str) -> tuple[ModelTarget, ...]:
    items = [value] if isinstance(value, str | Mapping) else value
    shape = (
        f'model alias {name!r} in {where} must be a "provider/model" string, a table '
        '{target = "provider/model", ...}, or a non-empty list of them'
    )
    if not isinstance(items, list) or not items:
        raise ConfigError(shape)
    targets = []
    for item in items:
        tags: dict[str, Any] = {}
        if isinstance(item, str):
            target = item
        elif isinstance(item, Mapping):
            found = item.get("target")
            if not isinstance(found, str):
                raise ConfigError(
                    f"model alias {name!r} in {where}: a table target needs "
                    f'target = "provider/model" (got keys {", ".join(sorted(item))})'
                )
            target = found
            tags = {str(k): v for k, v in item.items() if k != "target"}
            weight = tags.get("weight")
            if weight is not None and (
                isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0
            ):
                raise ConfigError(
                    f"model alias {name!r} in {where}: weight of {target!r} must be a "
                    f"number >= 0, not {weight!r}"
                )
        else:
            raise ConfigError(shape)
        provider, _, model = target.partition("/")
        if not provider or not model:
            raise ConfigError(
                f'model alias {name!r} in {where}: {target!r} is not "provider/model"'
            )
        targets.append(ModelTarget(target=target, tags=tags))
    return tuple(targets)


def _experiment(name: str, table: Mapping[str, Any], where: str) -> Experiment:
    what = f"model {name!r} in {where}"
    unknown = set(table) - {"variants", "split", "by"}
    if unknown:
        raise ConfigError(
            f"unknown key {sorted(unknown)[0]!r} in {what} (an experiment takes variants, "
            "split and by)"
        )
    variants, split = table.get("variants"), table.get("split")
    if not isinstance(variants, Mapping) or not variants:
        raise ConfigError(f"'variants' of {what} must be a table of variant = \"model\"")
    for variant, target in variants.items():
        if not isinstance(target, str) or not target:
            raise ConfigError(f"variant {variant!r} of {what} must be a model string")
    if not isinstance(split, Mapping) or set(split) != set(variants):
        raise ConfigError(
            f"'split' of {what} must give a share to each variant: {sorted(variants)}"
        )
    shares: dict[str, float] = {}
    for variant, share in split.items():
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise ConfigError(f"split {variant!r} of {what} must be a number in [0, 1]")
        shares[variant] = float(share)
    if abs(sum(shares.values()) - 1.0) > 1e-6:
        raise ConfigError(f"the split of {what} must add up to 1, not {sum(shares.values()):g}")
    by = table.get("by", EXPERIMENT_BY)
    by = (by,) if isinstance(by, str) else by
    if not isinstance(by, list | tuple) or not all(isinstance(k, str) for k in by) or not by:
        raise ConfigError(f"'by' of {what} must name request metadata keys (session, tenant...)")
    return Experiment(name=name, variants=dict(variants), split=shares, by=tuple(by))


def _routing(table: Mapping[str, Any], where: Any) -> RoutingConfig:
    here = where("routing")
    settings: dict[str, Mapping[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in table.items():
        if key == "fallback":
            continue
        if isinstance(value, Mapping):
            settings[key] = dict(value)
        else:
            top[key] = value
    parsed = parse_options(_RoutingTop, top, where=here)
    fallback = _fallback(table.get("fallback", {}), where("routing.fallback"))
    return RoutingConfig(
        strategy=parsed.strategy,
        implicit_providers=parsed.implicit_providers,
        fallback=fallback,
        settings=settings,
    )


@attrs.frozen(kw_only=True)
class _RoutingTop:
    strategy: str = DEFAULT_STRATEGY
    implicit_providers: bool = True


def _fallback(table: Any, where: str) -> FallbackConfig:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table")
    numbers = {k: v for k, v in table.items() if k in ("attempts_per_candidate", "max_attempts")}
    rules: dict[str, Rule] = {}
    for key, value in table.items():
        if key in numbers:
            continue
        if key not in ERROR_KINDS:
            import difflib

            known = [*ERROR_KINDS, "attempts_per_candidate", "max_attempts"]
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
            raise ConfigError(f"unknown key {key!r} in {where}{hint}")
        if value not in ("retry", "next", "raise"):
            raise ConfigError(
                f"{key!r} in {where} must be one of 'retry', 'next', 'raise', not {value!r}"
            )
        rules[key] = value
    parsed = parse_options(_FallbackNumbers, numbers, where=where)
    try:
        return FallbackConfig(
            attempts_per_candidate=parsed.attempts_per_candidate,
            max_attempts=parsed.max_attempts,
            rules=rules,
        )
    except ValueError as exc:
        raise ConfigError(f"invalid value in {where}: {exc}") from None


@attrs.frozen(kw_only=True)
class _FallbackNumbers:
    attempts_per_candidate: int | None = None
    max_attempts: int = 10


def _price(name: str, table: Any, where: str) -> ModelPrice:
    if "/" not in name:
        raise ConfigError(f'{where}: price keys are "provider/model", not {name!r}')
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table with input and output prices")
    known = (
        "input",
        "output",
        "cached_input",
        "cache_write",
        "cache_write_1h",
        "reasoning",
        "currency",
        "source",
    )
    for key in table:
        if key not in known:
            raise ConfigError(f"unknown key {key!r} in {where}; known keys: {', '.join(known)}")
    values: dict[str, Any] = {}
    for key in ("input", "output", "cached_input", "cache_write", "cache_write_1h", "reasoning"):
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
