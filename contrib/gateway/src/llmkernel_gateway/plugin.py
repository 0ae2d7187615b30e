"""llmkernel hooks for the gateway: its CLI commands and a check of its config.

Cheap to import: the server, uvicorn and prometheus load only when a command runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel import hookimpl

if TYPE_CHECKING:
    from llmkernel.cli_registry import CommandRegistry
    from llmkernel.config import Config


@hookimpl
def register_commands(registry: CommandRegistry) -> None:
    from llmkernel_gateway import commands

    registry.add(
        "serve",
        help="run the OpenAI-compatible gateway",
        run=commands.serve,
        arguments=commands.serve_arguments,
    )
    registry.add(
        "gateway-keys",
        help="the gateway's API keys: create, list, show, update, rotate, revoke",
        run=commands.keys,
        arguments=commands.keys_arguments,
    )


@hookimpl
def configure(config: Config) -> None:
    """Refuse a wrong ``[plugin.gateway]`` table when any kernel starts."""
    if config.plugin_settings("gateway"):
        from llmkernel_gateway.settings import load_settings

        load_settings(config)
