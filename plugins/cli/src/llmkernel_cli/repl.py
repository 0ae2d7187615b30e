"""``llmkernel repl`` / ``chat -i``: a conversation in the terminal, as ``llm chat``.

Line editing and history come from ``readline`` where Python has it. ``!multi``
starts a multi-line message, ``!end`` sends it (``!multi abc`` ... ``!end abc``
when the text holds a ``!end`` line); ``exit`` or ``quit`` (or end of input) ends
the session. Each turn is logged in the session's conversation; a failed turn
prints its error and the conversation goes on without it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel
    from llmkernel_cli.attachments import Attachment
    from llmkernel_cli.chat import Session

__all__ = ["add_arguments", "repl", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from llmkernel_cli.chat import add_arguments as chat_arguments

    chat_arguments(parser)


def run(args: argparse.Namespace, kernel: Kernel) -> int:
    from llmkernel_cli.chat import Session, attachments_of

    return repl(Session.start(kernel, args), args, attachments_of(args), sys.stdout)


def _reader(tty: bool) -> object:
    if tty:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  # line editing and history for input()

        def read(prompt: str) -> str | None:
            try:
                return input(prompt)
            except EOFError:
                return None

    else:

        def read(prompt: str) -> str | None:
            line = sys.stdin.readline()
            return line.rstrip("\n") if line else None

    return read


def repl(
    session: Session, args: argparse.Namespace, attachments: Sequence[Attachment], out: TextIO
) -> int:
    from llmkernel.errors import LLMKernelError
    from llmkernel_cli.shell import UsageError

    tty = sys.stdin.isatty()
    read = _reader(tty)
    assert callable(read)
    if tty:
        print(
            f"Chatting with {session.model}\nType 'exit' or 'quit' to exit\n"
            "Type '!multi' to enter multiple lines, then '!end' to finish",
            file=sys.stderr,
        )
    pending = list(attachments)  # sent with the first message
    while True:
        line = read("> ")
        if line is None or line.strip() in ("exit", "quit"):
            return 0
        text = line
        if line.strip().startswith("!multi"):
            end = f"!end {line.strip()[len('!multi') :].strip()}".strip()
            lines: list[str] = []
            while (more := read("")) is not None and more.strip() != end:
                lines.append(more)
            text = "\n".join(lines)
        if not text.strip():
            continue
        try:
            session.turn(text, pending, out, stream=not args.no_stream, verbose=args.verbose)
        except (LLMKernelError, UsageError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"llmkernel: error: {message}", file=sys.stderr)
            continue
        pending = []
