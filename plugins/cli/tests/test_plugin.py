"""The plugin stays cheap: registering its commands and building their parsers
imports no SQLite, YAML or HTTP client (those load when a command runs)."""

from __future__ import annotations

import json
import subprocess
import sys

CODE = """
import argparse, json, sys
from llmkernel.cli_registry import CommandRegistry
from llmkernel_cli import plugin
registry = CommandRegistry()
plugin.register_commands(registry=registry)
sub = argparse.ArgumentParser().add_subparsers()
for command in registry.commands.values():
    command.arguments(sub.add_parser(command.name))
print(json.dumps(sorted(registry.commands)))
print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))
"""


def test_registering_and_parsing_import_nothing_heavy() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert json.loads(out[0]) == sorted(
        ["chat", "repl", "logs", "templates", "keys", "embed", "embed-multi", "similar"]
    )
    loaded = set(json.loads(out[1]))
    heavy = {"sqlite3", "sqlite_utils", "yaml", "httpx", "keyring", "asyncio", "readline"}
    assert not loaded & heavy, loaded & heavy
