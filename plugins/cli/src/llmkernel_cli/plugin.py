"""The ``cli`` plugin: the daily-use commands, registered with the core shell.
Cheap to import: the command modules load when the CLI registers them."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from llmkernel import hookimpl

if TYPE_CHECKING:
    from llmkernel.cli_registry import CommandRegistry

__all__ = ["register_commands"]

#: name -> (help, module, arguments function, run function)
COMMANDS = {
    "chat": ("send a prompt and stream the reply (-C continues, -t templates, -a files)",
             "chat", "add_arguments", "run"),
    "repl": ("hold a conversation, with line editing (as chat -i)", "repl", "add_arguments", "run"),
    "logs": ("the conversation log: list, search (-q), on, off, status, path",
             "logs_cli", "add_arguments", "run"),
    "templates": ("prompt templates: save, list, show, delete, path",
                  "templates_cli", "add_arguments", "run"),
    "keys": ("stored API keys: set (prompted), list, path, remove", "keys", "add_arguments", "run"),
    "embed": ("print the embedding of a text", "embed", "embed_arguments", "run_embed"),
    "embed-multi": ("embed a CSV/JSON/JSONL file or files into a collection",
                    "embed", "multi_arguments", "run_multi"),
    "similar": ("the items of a collection most like a text", "embed",
                "similar_arguments", "run_similar"),
}  # fmt: skip


def _function(module: str, name: str) -> Any:
    return getattr(importlib.import_module(f"llmkernel_cli.{module}"), name)


@hookimpl
def register_commands(registry: CommandRegistry) -> None:
    for command, (help, module, arguments, run) in COMMANDS.items():
        # the CLI builds every command's parser when it runs one: no command
        # module imports anything heavy at its top
        registry.add(
            command, help=help, arguments=_function(module, arguments), run=_function(module, run)
        )
