"""Prompt templates: YAML files in ``$XDG_CONFIG_HOME/llmkernel/templates``.

A template has any of ``system``, ``prompt``, ``model``, ``options`` (request
fields or provider options, as ``-o``) and ``defaults`` (values of its
parameters). ``$input`` in ``prompt`` is the user's input (a ``prompt`` without
it gets the input after it; no ``prompt`` makes the input the prompt); any other
``$name`` is a parameter given with ``-p name value``; ``$$`` is a dollar sign.
The format is ``llm``'s, so its templates work as they are.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from llmkernel_cli.paths import config_dir

__all__ = ["Template", "load", "names", "save", "templates_dir"]

_NAME = re.compile(r"^[A-Za-z0-9][\w.-]{0,99}$")
_KEYS = ("name", "system", "prompt", "model", "options", "defaults")


def templates_dir() -> Path:
    return config_dir() / "templates"


@attrs.frozen(kw_only=True)
class Template:
    name: str
    system: str | None = None
    prompt: str | None = None
    model: str | None = None
    options: Mapping[str, Any] = attrs.field(factory=dict)
    defaults: Mapping[str, str] = attrs.field(factory=dict)

    def render(self, text: str | None, params: Mapping[str, str]) -> tuple[str | None, str]:
        """``(system, prompt)`` for the user's ``text`` and ``params``."""
        values = {**self.defaults, **params}
        user = text or ""
        system = self._fill(self.system, values) if self.system else None
        if self.prompt is None:
            prompt = user
        elif "$input" in self.prompt or "${input}" in self.prompt:
            prompt = self._fill(self.prompt, {**values, "input": user})
        else:
            prompt = self._fill(self.prompt, values) + (f"\n{user}" if user else "")
        return system, prompt

    def _fill(self, text: str, values: Mapping[str, str]) -> str:
        from llmkernel_cli.shell import UsageError

        try:
            return string.Template(text).substitute(values)
        except KeyError as exc:
            raise UsageError(
                f"template {self.name!r} needs the parameter {exc.args[0]!r}: "
                f"-p {exc.args[0]} VALUE"
            ) from None
        except ValueError as exc:
            raise UsageError(f"template {self.name!r}: {exc} (write $$ for a dollar)") from None

    def data(self) -> dict[str, Any]:
        """The YAML mapping (empty fields left out)."""
        fields = attrs.asdict(self)
        fields.pop("name")
        return {k: v for k, v in fields.items() if v not in (None, {}, "")}


def _path(name: str) -> Path:
    from llmkernel_cli.shell import UsageError

    if not _NAME.match(name):
        raise UsageError(
            f"template name {name!r}: letters, digits, '.', '_' and '-' only "
            "(or a path to a .yaml file)"
        )
    return templates_dir() / f"{name}.yaml"


def names() -> list[str]:
    folder = templates_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def load(name: str) -> Template:
    """The template ``name`` (or the YAML file at that path)."""
    import yaml

    from llmkernel_cli.shell import UsageError

    path = Path(name) if name.endswith((".yaml", ".yml")) else _path(name)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = ", ".join(names()) or "none saved"
        raise UsageError(f"no template {name!r} (templates: {known})") from None
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"template {str(path)!r} cannot be read: {exc}") from None
    if isinstance(data, str):  # llm's shorthand: the file is the prompt
        data = {"prompt": data}
    if not isinstance(data, Mapping):
        raise UsageError(f"template {str(path)!r} must be a YAML mapping")
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise UsageError(
            f"template {str(path)!r}: unknown key {unknown[0]!r} (known: {', '.join(_KEYS[1:])})"
        )
    for key in ("system", "prompt", "model"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise UsageError(f"template {str(path)!r}: {key} must be a string")
    for key in ("options", "defaults"):
        if not isinstance(data.get(key) or {}, Mapping):
            raise UsageError(f"template {str(path)!r}: {key} must be a mapping")
    return Template(
        name=Path(name).stem,
        system=data.get("system"),
        prompt=data.get("prompt"),
        model=data.get("model"),
        options=dict(data.get("options") or {}),
        defaults={str(k): str(v) for k, v in (data.get("defaults") or {}).items()},
    )


def save(template: Template) -> Path:
    import yaml

    path = _path(template.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        yaml.safe_dump(template.data(), sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    return path


def delete(name: str) -> None:
    from llmkernel_cli.shell import UsageError

    path = _path(name)
    if not path.exists():
        raise UsageError(f"no template {name!r}")
    path.unlink()
