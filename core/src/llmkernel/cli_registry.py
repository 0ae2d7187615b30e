"""Where ``register_commands`` plugins add subcommands to the CLI."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel


@attrs.frozen(kw_only=True)
class Command:
    name: str
    help: str
    run: Callable[[argparse.Namespace, Kernel], int | None]
    arguments: Callable[[argparse.ArgumentParser], Any] | None = None


@attrs.define
class CommandRegistry:
    """Collects commands; the CLI turns each into a subparser."""

    commands: dict[str, Command] = attrs.field(factory=dict)

    def add(
        self,
        name: str,
        *,
        help: str,
        run: Callable[[argparse.Namespace, Kernel], int | None],
        arguments: Callable[[argparse.ArgumentParser], Any] | None = None,
    ) -> None:
        if name in self.commands:
            raise ValueError(f"command {name!r} is registered twice")
        self.commands[name] = Command(name=name, help=help, run=run, arguments=arguments)
