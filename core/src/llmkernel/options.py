"""Reading a config table into a plugin's attrs settings class, strictly.

Unknown keys (with a did-you-mean), missing required keys and wrong types raise
:class:`~llmkernel.errors.ConfigError` naming the key and where it was found, so a
typo in ``llmkernel.toml`` is refused at startup instead of being ignored.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import attrs

from llmkernel.errors import ConfigError

T = TypeVar("T")


def parse_options(cls: type[T], table: Mapping[str, Any], *, where: str) -> T:
    """Build ``cls`` (an attrs class) from ``table``; ``where`` names the table in
    errors, for example ``"[providers.groq] in ./llmkernel.toml"``."""
    fields = {f.name: f for f in attrs.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    known = {_key(name): name for name in fields if not name.startswith("_")}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        name = known.get(key)
        if name is None:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = (
                f"; did you mean {close[0]!r}?"
                if close
                else f"; known keys: {', '.join(sorted(known))}"
            )
            raise ConfigError(f"unknown key {key!r} in {where}{hint}")
        kwargs[name] = _check(value, hints[name], f"{key!r} in {where}")
    for name, field in fields.items():
        if field.default is attrs.NOTHING and name not in kwargs and field.init:
            raise ConfigError(f"missing required key {_key(name)!r} in {where}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid value in {where}: {exc}") from exc


def _key(name: str) -> str:
    return name.lstrip("_")


def _check(value: Any, hint: Any, what: str) -> Any:
    origin = get_origin(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        for option in get_args(hint):
            try:
                return _check(value, option, what)
            except ConfigError:
                continue
        raise ConfigError(f"{what} must be {_describe(hint)}, not {_value(value)}")
    if hint is type(None):
        if value is None:
            return None
        raise ConfigError(f"{what} must be empty")
    if origin is Literal:
        if value in get_args(hint):
            return value
        choices = ", ".join(repr(a) for a in get_args(hint))
        raise ConfigError(f"{what} must be one of {choices}, not {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is int or hint is str or hint is bool:
        if isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
            return value
    elif origin in (list, tuple) or hint in (list, tuple):
        if isinstance(value, list | tuple):
            (item,) = get_args(hint)[:1] or (Any,)
            checked = [_check(v, item, f"an item of {what}") for v in value]
            return tuple(checked) if origin is tuple or hint is tuple else checked
    elif origin in (dict, Mapping) or origin is getattr(typing, "Mapping", None) or hint is dict:
        if isinstance(value, Mapping):
            args = get_args(hint)
            vtype = args[1] if len(args) == 2 else Any
            return {str(k): _check(v, vtype, f"{what}[{k!r}]") for k, v in value.items()}
    elif isinstance(hint, type) and attrs.has(hint):
        if isinstance(value, Mapping):
            return parse_options(hint, value, where=what)
    else:
        return value
    raise ConfigError(f"{what} must be {_describe(hint)}, not {_value(value)}")


def _describe(hint: Any) -> str:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(hint) if a is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(hint))
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    if hint in names:
        return names[hint]
    if origin in (list, tuple):
        return "a list"
    if origin in (dict, Mapping):
        return "a table"
    return getattr(hint, "__name__", str(hint))


def _value(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:120]
