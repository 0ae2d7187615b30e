"""``llmkernel templates save|list|show|delete|path``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from llmkernel_cli.chat import option_arguments

    parser.add_argument(
        "action", nargs="?", choices=("list", "save", "show", "delete", "path"), default="list"
    )
    parser.add_argument("name", nargs="?", help="the template's name")
    parser.add_argument("--prompt", help="the prompt ($input: the user's input)")
    option_arguments(parser)


def run(args: argparse.Namespace, kernel: Kernel) -> int:
    import yaml

    from llmkernel_cli.chat import save_template
    from llmkernel_cli.shell import UsageError
    from llmkernel_cli.templates import delete, load, names, templates_dir

    out = sys.stdout
    if args.action == "path":
        out.write(f"{templates_dir()}\n")
        return 0
    if args.action == "list":
        for name in names():
            template = load(name)
            what = " ".join(
                f"{key}: {' '.join(str(value).split())[:50]}"
                for key, value in (("system", template.system), ("prompt", template.prompt))
                if value
            )
            out.write(f"{name:<20} : {what}\n")
        return 0
    if not args.name:
        raise UsageError(f"templates {args.action} needs a NAME")
    if args.action == "save":
        if not (args.system or args.prompt or args.model or args.option):
            raise UsageError("templates save needs at least one of -s, --prompt, -m, -o")
        return save_template(args, args.name, args.prompt)
    if args.action == "show":
        out.write(yaml.safe_dump(load(args.name).data(), sort_keys=False, allow_unicode=True))
        return 0
    delete(args.name)
    print(f"deleted template {args.name!r}", file=sys.stderr)
    return 0
