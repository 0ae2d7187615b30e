"""llmkernel hooks of the batch plugin: its settings and the ``batch`` command.
Cheap to import: everything else loads when the command runs."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from llmkernel import hookimpl

if TYPE_CHECKING:
    import argparse

    from llmkernel.cli_registry import CommandRegistry
    from llmkernel.config import Config
    from llmkernel.kernel import Kernel

__all__ = ["configure", "register_commands", "settings_for"]

_KEYS = ("path", "concurrency", "poll_interval")
_settings: weakref.WeakKeyDictionary[Kernel, Mapping[str, Any]] = weakref.WeakKeyDictionary()


def settings_for(kernel: Kernel) -> Mapping[str, Any]:
    """The kernel's ``[plugin.batch]`` table (checked), empty when absent."""
    return _settings.get(kernel, {})


@hookimpl
def configure(kernel: Kernel, config: Config) -> None:
    from llmkernel.errors import ConfigError

    table = dict(config.plugin_settings("batch"))
    where = config.where("plugin.batch")
    for key in table:
        if key not in _KEYS:
            import difflib

            close = difflib.get_close_matches(key, _KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown key {key!r} in {where}{hint}")
    path = table.get("path")
    if path is not None and (not isinstance(path, str) or not path):
        raise ConfigError(f"path in {where} must be a non-empty string, not {path!r}")
    concurrency = table.get("concurrency", 8)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency in {where} must be a positive integer, not {concurrency!r}")
    interval = table.get("poll_interval", 30.0)
    if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
        raise ConfigError(f"poll_interval in {where} must be a positive number, not {interval!r}")
    _settings[kernel] = {"path": path, "concurrency": concurrency, "poll_interval": float(interval)}


@hookimpl
def register_commands(registry: CommandRegistry) -> None:
    registry.add(
        "batch",
        help="run a JSONL file of requests (resumable, under a budget), or a provider batch",
        arguments=_arguments,
        run=_run,
    )


def _arguments(parser: argparse.ArgumentParser) -> None:
    from llmkernel_batch.cli import add_arguments

    add_arguments(parser)


def _run(args: argparse.Namespace, kernel: Kernel) -> int:
    from llmkernel_batch.cli import run

    return run(args, kernel)
