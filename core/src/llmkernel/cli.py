"""The ``llmkernel`` command line. It (with the gateway) is the only place that
configures structlog; the library itself stays quiet."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _configure_logging(verbosity: int) -> None:
    import logging

    import structlog

    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    processors: list[Any] = [structlog.processors.add_log_level]
    if verbosity:
        processors.append(structlog.processors.TimeStamper(fmt="%H:%M:%S"))
    processors.append(structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *args: structlog.PrintLogger(sys.stderr),  # stderr as of now
        cache_logger_on_first_use=False,
    )


def build_parser() -> argparse.ArgumentParser:
    from llmkernel import __version__

    parser = argparse.ArgumentParser(
        prog="llmkernel", description="One API over every LLM provider."
    )
    parser.add_argument("--version", action="version", version=f"llmkernel {__version__}")
    parser.add_argument(
        "-c",
        "--config",
        metavar="PATH",
        help="config file (default: $LLMKERNEL_CONFIG, ./llmkernel.toml, the user config dir)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="show usage and cost; twice for debug logs",
    )
    common = _common()
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    chat = sub.add_parser("chat", help="send a prompt and stream the reply", parents=[common])
    chat.add_argument("prompt", nargs="?", help="the prompt; '-' or nothing reads stdin")
    chat.add_argument("-m", "--model", help="provider/model or alias (default: default_model)")
    chat.add_argument("-s", "--system", help="system prompt")
    chat.add_argument("--json", action="store_true", help="print the response as JSON")
    chat.add_argument("--no-stream", action="store_true", help="wait for the whole reply")
    chat.add_argument("--max-tokens", type=int)
    chat.add_argument("--temperature", type=float)
    chat.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a provider option (value parsed as JSON when it can be)",
    )

    models = sub.add_parser(
        "models", help="configured providers, models and aliases", parents=[common]
    )
    models.add_argument("--json", action="store_true")
    plugins = sub.add_parser("plugins", help="installed plugins and their status", parents=[common])
    plugins.add_argument("--json", action="store_true")
    return parser


def _common() -> argparse.ArgumentParser:
    """Options every command takes, so ``-v`` also works after it: ``chat "hi" -v``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        dest="sub_verbose",
        default=0,
        help="show usage and cost; twice for debug logs",
    )
    return common


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    builtin = {"chat", "models", "plugins"}
    command = _command_name(argv)
    from llmkernel.errors import (
        AllCandidatesFailedError,
        ConfigError,
        InvalidRequestError,
        LLMKernelError,
        NoProviderError,
        PluginError,
    )

    try:
        kernel = None
        registry = None
        if command is not None and command not in builtin:
            # plugin commands need the kernel's plugins before arguments are parsed
            kernel = _kernel(_config_arg(argv))
            registry = _plugin_commands(kernel, parser)
        args = parser.parse_args(argv)
        args.verbose += getattr(args, "sub_verbose", 0)
        _configure_logging(args.verbose)
        if args.command is None:
            parser.print_help()
            return EXIT_OK
        kernel = kernel or _kernel(args.config)
        with kernel:
            if args.command == "chat":
                return _chat(kernel, args, sys.stdout)
            if args.command == "models":
                return _models(kernel, args, sys.stdout)
            if args.command == "plugins":
                return _plugins(kernel, args, sys.stdout)
            assert registry is not None
            result = registry.commands[args.command].run(args, kernel)
            return int(result or 0)
    except AllCandidatesFailedError as exc:  # every provider failed: not the user's input
        return _fail(exc, EXIT_FAILED)
    except (ConfigError, InvalidRequestError, NoProviderError, PluginError) as exc:
        return _fail(exc, EXIT_USAGE)
    except LLMKernelError as exc:
        return _fail(exc, EXIT_FAILED)
    except KeyboardInterrupt:
        return 130


def _command_name(argv: list[str]) -> str | None:
    """The subcommand in ``argv``: the first word that is not an option or its value."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("-c", "--config"):
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def _config_arg(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg in ("-c", "--config") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def _fail(exc: Exception, code: int) -> int:
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    print(f"llmkernel: error: {message}", file=sys.stderr)
    return code


def _kernel(config: str | None) -> Kernel:
    from llmkernel.kernel import Kernel

    return Kernel.from_config(config)


def _plugin_commands(kernel: Kernel, parser: argparse.ArgumentParser) -> Any:
    from llmkernel.cli_registry import CommandRegistry

    registry = CommandRegistry()
    kernel.hook.register_commands(registry=registry)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in registry.commands.values():
        child = sub.add_parser(command.name, help=command.help, parents=[_common()])
        if command.arguments is not None:
            command.arguments(child)
    return registry


def _option(text: str) -> tuple[str, Any]:
    from llmkernel.errors import ConfigError

    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"option {text!r} must be KEY=VALUE")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def _chat(kernel: Kernel, args: argparse.Namespace, out: TextIO) -> int:
    from llmkernel.errors import InvalidRequestError

    prompt = args.prompt
    if prompt in (None, "-"):
        if sys.stdin is None or sys.stdin.isatty():
            raise InvalidRequestError("no prompt: pass one, or pipe it on stdin")
        prompt = sys.stdin.read()
    if not prompt.strip():
        raise InvalidRequestError("the prompt is empty")
    messages: list[dict[str, str]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": prompt})
    options = dict(_option(o) for o in args.option)
    if args.max_tokens is not None:
        options["max_tokens"] = args.max_tokens
    if args.temperature is not None:
        options["temperature"] = args.temperature
    if args.json or args.no_stream:
        response = kernel.chat(model=args.model, messages=messages, **options)
        if args.json:
            out.write(json.dumps(response_json(response), indent=2) + "\n")
        else:
            out.write(response.text + "\n")
            for call in response.tool_calls:
                out.write(f"[tool call] {call.name}({call.arguments_json})\n")
    else:
        stream = kernel.stream(model=args.model, messages=messages, **options)
        calls: dict[int, list[str]] = {}
        names: dict[int, str] = {}
        for event in stream:
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
        response = stream.response  # type: ignore[assignment]
    if args.verbose and response is not None:
        usage = response.usage
        cost = "unpriced" if response.cost is None else f"${response.cost:.6f}"
        print(
            f"[{response.provider}/{response.model}] input {usage.input_tokens} "
            f"(cached {usage.cached_input_tokens}), output {usage.output_tokens} "
            f"(reasoning {usage.reasoning_tokens}), total {usage.total_tokens} tokens; "
            f"cost {cost}; {response.latency * 1000:.0f} ms, {response.attempts} attempt(s)",
            file=sys.stderr,
        )
    return EXIT_OK


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
        "usage": {
            "input_tokens": usage.input_tokens,
            "cached_input_tokens": usage.cached_input_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "output_tokens": usage.output_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "total_tokens": usage.total_tokens,
        },
        "cost": None if response.cost is None else str(response.cost),
        "latency": round(response.latency, 6),
        "attempts": response.attempts,
        "cached": response.cached,
    }


def _models(kernel: Kernel, args: argparse.Namespace, out: TextIO) -> int:
    rows = []
    for name, provider in sorted(kernel.providers().items()):
        plugin = kernel.provider_plugins.get(name, "?")
        for model in provider.declared_models() or ["*"]:
            rows.append(
                {
                    "model": f"{name}/{model}",
                    "provider": name,
                    "type": provider.type,
                    "plugin": plugin,
                }
            )
    if not kernel.config.providers:
        # nothing configured: show what the default would use
        try:
            provider = kernel.provider(kernel.default_model.partition("/")[0])
            for model in provider.declared_models():
                rows.append(
                    {
                        "model": f"{provider.name}/{model}",
                        "provider": provider.name,
                        "type": provider.type,
                        "plugin": kernel.provider_plugins.get(provider.name, "?"),
                    }
                )
        except Exception:
            pass
    aliases = {name: list(targets) for name, targets in sorted(kernel.config.models.items())}
    if args.json:
        out.write(
            json.dumps(
                {"models": rows, "aliases": aliases, "default_model": kernel.config.default_model},
                indent=2,
            )
            + "\n"
        )
        return EXIT_OK
    width = max([len(r["model"]) for r in rows] + [5])
    out.write(f"{'MODEL':<{width}}  {'TYPE':<10}  PLUGIN\n")
    for row in rows:
        out.write(f"{row['model']:<{width}}  {row['type']:<10}  {row['plugin']}\n")
    if aliases:
        out.write("\nALIASES\n")
        for name, targets in aliases.items():
            out.write(f"{name} = {', '.join(targets)}\n")
    default = kernel.config.default_model or "mock/echo (offline default)"
    out.write(f"\ndefault model: {default}\n")
    return EXIT_OK


def _plugins(kernel: Kernel, args: argparse.Namespace, out: TextIO) -> int:
    rows = [p for p in kernel.plugins]
    if args.json:
        out.write(
            json.dumps(
                [
                    {
                        "name": p.name,
                        "distribution": p.distribution,
                        "version": p.version,
                        "status": p.status,
                        "hooks": list(p.hooks),
                        "error": p.error,
                    }
                    for p in rows
                ],
                indent=2,
            )
            + "\n"
        )
        return EXIT_OK
    if not rows:
        out.write("no plugins installed\n")
        return EXIT_OK
    width = max(len(p.name) for p in rows)
    dwidth = max(len(f"{p.distribution or '-'} {p.version or ''}") for p in rows)
    out.write(f"{'NAME':<{width}}  {'DISTRIBUTION':<{dwidth}}  {'STATUS':<8}  HOOKS\n")
    for p in rows:
        dist = f"{p.distribution or '-'} {p.version or ''}".strip()
        detail = ", ".join(p.hooks) if p.status == "loaded" else (p.error or "")
        out.write(f"{p.name:<{width}}  {dist:<{dwidth}}  {p.status:<8}  {detail}\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
