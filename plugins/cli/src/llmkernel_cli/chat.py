"""``llmkernel chat``: one prompt, streamed to the terminal, logged; ``-C`` / ``--cid``
continue a logged conversation, ``-t`` applies a template, ``-a`` attaches files,
``-i`` holds a conversation (:mod:`llmkernel_cli.repl`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

import attrs

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel
    from llmkernel.types import Message, Response
    from llmkernel_cli.attachments import Attachment
    from llmkernel_cli.logs import LogStore
    from llmkernel_cli.templates import Template

__all__ = ["Session", "add_arguments", "option_arguments", "response_json", "run"]

# keyword arguments of kernel.chat the CLI sets itself
RESERVED = {"model": "-m", "messages": "the prompt"}


def option_arguments(parser: argparse.ArgumentParser) -> None:
    """``-s``, ``-m``, ``-o``, ``-p``: what a prompt and a template are made of."""
    parser.add_argument("-m", "--model", help="provider/model or alias (default: default_model)")
    parser.add_argument("-s", "--system", help="system prompt")
    parser.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a request field or provider option (VALUE parsed as JSON when it can be)",
    )
    parser.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a template parameter ($NAME)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "prompt",
        nargs="?",
        help="the prompt; piped text on stdin goes before it; '-' or nothing: stdin is the prompt",
    )
    option_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the response as JSON")
    parser.add_argument("--no-stream", action="store_true", help="wait for the whole reply")
    parser.add_argument("--max-tokens", type=int)
    parser.add_argument("--temperature", type=float)
    parser.add_argument("-t", "--template", metavar="NAME", help="a saved template (or a .yaml)")
    parser.add_argument(
        "-a",
        "--attachment",
        action="append",
        default=[],
        metavar="PATH_OR_URL",
        help="an image or PDF to send with the prompt ('-': stdin); repeatable",
    )
    parser.add_argument(
        "--at",
        "--attachment-type",
        nargs=2,
        action="append",
        default=[],
        metavar=("PATH", "TYPE"),
        help="an attachment with its media type, when its content does not show it",
    )
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument(
        "-C",
        "--continue",
        dest="continue_",
        action="store_true",
        help="continue the last conversation",
    )
    talk.add_argument("--cid", "--conversation", metavar="ID", help="continue this conversation")
    parser.add_argument(
        "-i", "--interactive", action="store_true", help="hold a conversation (as `repl`)"
    )
    log = parser.add_mutually_exclusive_group()
    log.add_argument("-n", "--no-log", action="store_true", help="do not log this exchange")
    log.add_argument("--log", action="store_true", help="log it even when logging is off")
    parser.add_argument(
        "--save", metavar="NAME", help="save -s/-m/-o/-p and the prompt as a template"
    )


def _options(args: argparse.Namespace, template: Template | None) -> dict[str, Any]:
    from llmkernel_cli.shell import parse_option

    options = dict(template.options) if template is not None else {}
    options.update(parse_option(o, RESERVED) for o in args.option)
    if getattr(args, "max_tokens", None) is not None:
        options["max_tokens"] = args.max_tokens
    if getattr(args, "temperature", None) is not None:
        options["temperature"] = args.temperature
    return options


@attrs.define(kw_only=True)
class Session:
    """One conversation: its model, system prompt, options, earlier turns, and the
    log it is written to (``None``: not logged)."""

    kernel: Kernel
    model: str
    defaulted: bool
    system: str | None
    options: dict[str, Any]
    params: dict[str, str]
    template: Template | None = None
    history: list[Message] = attrs.field(factory=list)
    conversation: str | None = None
    store: LogStore | None = None
    logged: bool = True

    @classmethod
    def start(cls, kernel: Kernel, args: argparse.Namespace) -> Session:
        from llmkernel.config import OFFLINE_DEFAULT_MODEL
        from llmkernel_cli.logs import LogStore, logging_on
        from llmkernel_cli.shell import UsageError

        template = None
        if args.template:
            from llmkernel_cli.templates import load

            template = load(args.template)
        logged = not args.no_log and (args.log or logging_on())
        store = LogStore() if logged or args.continue_ or args.cid else None
        conversation, history, first_system, earlier_model = None, [], None, None
        if args.continue_ or args.cid:
            assert store is not None
            conversation = args.cid or store.last_conversation()
            if conversation is None:
                raise UsageError("no conversation to continue: the log is empty")
            turns = store.turns(conversation)
            if not turns:
                raise UsageError(f"no conversation {conversation!r} in {store.path}")
            history = _history(turns)
            first_system = turns[0]["system"]
            earlier_model = store.conversation_model(conversation)
        chosen = args.model or (template.model if template else None) or earlier_model
        model = chosen or kernel.config.default_model or OFFLINE_DEFAULT_MODEL
        return cls(
            kernel=kernel,
            model=model,
            defaulted=chosen is None,
            system=args.system or first_system,
            options=_options(args, template),
            params=dict(args.param),
            template=template,
            history=history,
            conversation=conversation,
            store=store,
            logged=logged,
        )

    def turn(
        self,
        text: str,
        attachments: Sequence[Attachment],
        out: TextIO,
        *,
        stream: bool = True,
        as_json: bool = False,
        verbose: int = 0,
    ) -> Response:
        """Send ``text`` after the earlier turns, print the answer, log it."""
        from llmkernel.types import Message, TextPart
        from llmkernel_cli.attachments import check_model

        system = self.system
        prompt = text
        if self.template is not None:
            rendered, prompt = self.template.render(text, self.params)
            system = self.system if self.system is not None else rendered
        if not prompt.strip():
            from llmkernel_cli.shell import UsageError

            raise UsageError("the prompt is empty")
        user = Message(
            role="user", content=(TextPart(text=prompt), *(a.part() for a in attachments))
        )
        messages = [*([Message.system(system)] if system else []), *self.history, user]
        kernel = self.kernel
        request = kernel.build_request(self.model, messages, **self.options)  # checks input
        check_model(kernel, self.model, attachments)
        if self.defaulted:
            kernel.models.default_model  # noqa: B018  # the one-time note, once input is good
        response = _send(kernel, request, out, stream=stream, as_json=as_json)
        self.history += [user, response.message]
        if verbose:
            _usage_line(response)
        if self.logged and self.store is not None:
            try:
                _, self.conversation = self.store.record(
                    conversation=self.conversation,
                    model=self.model,
                    prompt=prompt,
                    system=system,
                    response=response,
                    options=self.options,
                    attachments=attachments,
                )
            except Exception as exc:  # the answer is out; say the log missed it
                print(
                    f"llmkernel: warning: not logged ({type(exc).__name__}: {exc})",
                    file=sys.stderr,
                )
        return response


def _history(turns: Sequence[dict[str, Any]]) -> list[Message]:
    from llmkernel.types import Message, TextPart

    history: list[Message] = []
    for turn in turns:
        parts = (TextPart(text=turn["prompt"]), *(a.part() for a in turn["attachments"]))
        history += [Message(role="user", content=parts), Message.assistant(turn["response"])]
    return history


def _send(kernel: Kernel, request: Any, out: TextIO, *, stream: bool, as_json: bool) -> Response:
    if as_json or not stream:
        response = kernel.chat(request)
        if as_json:
            out.write(json.dumps(response_json(response), indent=2) + "\n")
        else:
            out.write(response.text + "\n")
            for call in response.tool_calls:
                out.write(f"[tool call] {call.name}({call.arguments_json})\n")
        out.flush()
        return response
    calls: dict[int, list[str]] = {}
    names: dict[int, str] = {}
    with kernel.stream(request) as events:
        for event in events:
            if event.type == "text":
                out.write(event.text)
                out.flush()
            elif event.type == "tool_call":
                calls.setdefault(event.index, []).append(event.arguments)
                if event.name:
                    names[event.index] = event.name
        out.write("\n")
        for index, pieces in sorted(calls.items()):
            out.write(f"[tool call] {names.get(index, '?')}({''.join(pieces)})\n")
        out.flush()
        final = events.response
    assert final is not None
    return final


def _usage_line(response: Response) -> None:
    usage = response.usage
    cost = "unpriced" if response.cost is None else f"${response.cost:.6f}"
    print(
        f"[{response.provider}/{response.model}] input {usage.input_tokens} "
        f"(cached {usage.cached_input_tokens}), output {usage.output_tokens} "
        f"(reasoning {usage.reasoning_tokens}), total {usage.total_tokens} tokens; "
        f"cost {cost}; {response.latency * 1000:.0f} ms, {response.attempts} attempt(s)",
        file=sys.stderr,
    )


def _prompt(args: argparse.Namespace, *, required: bool) -> str:
    """The prompt argument and/or stdin: piped text comes first, then the prompt, a
    blank line between; ``-`` or no prompt makes stdin the prompt."""
    from llmkernel_cli.shell import UsageError

    prompt = args.prompt
    piped: str | None = None
    stdin = sys.stdin
    stdin_taken = "-" in args.attachment or any(p == "-" for p, _ in args.at)
    if stdin is not None and not stdin.isatty() and not stdin_taken:
        piped = stdin.read().rstrip("\n")
    if prompt in (None, "-"):
        if piped is None and required:
            raise UsageError("no prompt: pass one, or pipe it on stdin")
        prompt = piped or ""
    elif piped:
        prompt = f"{piped}\n\n{prompt}"
    if required and not prompt.strip():
        raise UsageError("the prompt is empty")
    return str(prompt)


def attachments_of(args: argparse.Namespace) -> list[Attachment]:
    from llmkernel_cli.attachments import load

    return [load(spec) for spec in args.attachment] + [load(p, t) for p, t in args.at]


def save_template(args: argparse.Namespace, name: str, prompt: str | None) -> int:
    from llmkernel_cli.shell import parse_option
    from llmkernel_cli.templates import Template, save

    path = save(
        Template(
            name=name,
            system=args.system,
            prompt=prompt,
            model=args.model,
            options=dict(parse_option(o, RESERVED) for o in args.option),
            defaults=dict(args.param),
        )
    )
    print(f"saved template {name!r} to {path}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace, kernel: Kernel) -> int:
    if args.save:
        return save_template(args, args.save, args.prompt)
    session = Session.start(kernel, args)
    attachments = attachments_of(args)
    if args.interactive:
        from llmkernel_cli.repl import repl

        return repl(session, args, attachments, sys.stdout)
    has_prompt = session.template is not None and session.template.prompt is not None
    text = _prompt(args, required=not has_prompt)
    session.turn(
        text,
        attachments,
        sys.stdout,
        stream=not args.no_stream,
        as_json=args.json,
        verbose=args.verbose,
    )
    return 0


def response_json(response: Any) -> dict[str, Any]:
    """A response as plain JSON types (Decimal cost as a string)."""
    usage = response.usage
    return {
        "id": response.id,
        "provider": response.provider,
        "model": response.model,
        "text": response.text,
        "reasoning": response.reasoning or None,
        "tool_calls": [
            {"id": c.id, "name": c.name, "arguments": dict(c.arguments)}
            for c in response.tool_calls
        ],
        "finish_reason": response.finish_reason,
        "parsed": response.parsed,
        "refusal": response.refusal,
        "usage": usage.as_dict(total=True),
        "cost": None if response.cost is None else str(response.cost),
        "latency": round(response.latency, 6),
        "attempts": response.attempts,
        "cached": response.cached,
    }
