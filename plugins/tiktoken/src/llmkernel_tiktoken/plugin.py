"""llmkernel hooks for token counting. Cheap to import: tiktoken loads on the first
count that needs it."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from llmkernel import hookimpl

if TYPE_CHECKING:
    import argparse

    from llmkernel.cli_registry import CommandRegistry
    from llmkernel.config import Config
    from llmkernel.kernel import Kernel
    from llmkernel.types import ChatRequest, EmbeddingRequest, TokenCount
    from llmkernel_tiktoken.counting import TokenCounter

__all__ = ["counter_of"]

NAME = "tiktoken"
_counters: weakref.WeakKeyDictionary[Any, TokenCounter] = weakref.WeakKeyDictionary()


def counter_of(kernel: Kernel) -> TokenCounter:
    """This plugin's counter in ``kernel`` (default settings when not configured)."""
    counter = _counters.get(kernel)
    if counter is None:
        from llmkernel_tiktoken.counting import TokenCounter
        from llmkernel_tiktoken.settings import TiktokenSettings

        counter = _counters[kernel] = TokenCounter(TiktokenSettings())
    return counter


@hookimpl
def configure(kernel: Kernel, config: Config) -> None:
    _counters.pop(kernel, None)  # a reconfigure without the table: the defaults again
    table = config.plugin_settings(NAME)
    if not table:
        return
    from llmkernel.options import parse_options
    from llmkernel_tiktoken.counting import TokenCounter
    from llmkernel_tiktoken.settings import TiktokenSettings

    settings = parse_options(TiktokenSettings, table, where=config.where(f"plugin.{NAME}"))
    _counters[kernel] = TokenCounter(settings)


@hookimpl
def count_tokens(
    kernel: Kernel, request: ChatRequest | EmbeddingRequest, provider_type: str, model: str
) -> TokenCount | None:
    return counter_of(kernel).count(request, provider_type, model)


@hookimpl
def register_commands(registry: CommandRegistry) -> None:
    registry.add(
        "tokens",
        help="count the tokens of a text for a model",
        arguments=_arguments,
        run=_run,
    )


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", nargs="?", help="the text; '-' or nothing reads stdin")
    parser.add_argument("-m", "--model", help="provider/model or alias (default: default_model)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--remote",
        action="store_true",
        help="ask the provider's counting endpoint ([plugin.tiktoken] remote lists which)",
    )


def _run(args: argparse.Namespace, kernel: Kernel) -> int:
    import json
    import sys

    text = args.text
    if text is None or text == "-":
        text = sys.stdin.read()
    from llmkernel.config import OFFLINE_DEFAULT_MODEL

    # counting calls no model: no note about the offline mock
    model = args.model or kernel.config.default_model or OFFLINE_DEFAULT_MODEL
    if getattr(args, "remote", False):
        import asyncio

        from llmkernel_tiktoken.api import acount_tokens

        count = asyncio.run(acount_tokens(kernel, model, text))
    else:
        count = kernel.count_tokens(model, text)
    if args.json:
        print(
            json.dumps(
                {
                    "model": model,
                    "tokens": count.tokens,
                    "exact": count.exact,
                    "method": count.method,
                }
            )
        )
    else:
        how = f"exact: {count.method}" if count.exact else count.method
        print(f"{count.tokens} tokens ({how})")
    return 0
