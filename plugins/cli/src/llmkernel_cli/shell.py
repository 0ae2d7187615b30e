"""The ``llmkernel`` command line. It (with the gateway) is the only place that
configures structlog; the library itself stays quiet."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from llmkernel.config import Config
    from llmkernel.kernel import Kernel
    from llmkernel.plugins import PluginStatus
    from llmkernel.provider import Provider

__all__ = ["UsageError", "build_parser", "main", "parse_option"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader went away


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
    # the CLI is the application: it chooses stamina's instrumentation. The kernel logs
    # each retry itself (llmkernel.retry.scheduled, info: shown with -v); stamina's own
    # structlog hook would print every retry as a warning (a batch with failures
    # floods the terminal)
    from stamina import instrumentation

    instrumentation.set_on_retry_hooks([])


def build_parser() -> argparse.ArgumentParser:
    from llmkernel import __version__

    parser = argparse.ArgumentParser(
        prog="llmkernel",
        description="One API over every LLM provider.",
        # plugins add commands; listing them here would import every plugin and
        # make --help slow, so say where to look instead
        epilog=(
            "Installed plugins add the other commands (the first-party ones: "
            f"{', '.join(_FIRST_PARTY)}); `llmkernel plugins` lists what is installed, "
            "`llmkernel COMMAND --help` explains one."
        ),
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

    models = sub.add_parser(
        "models", help="known models of every installed provider, and aliases", parents=[common]
    )
    models.add_argument("--json", action="store_true", help="print JSON")
    models.add_argument(
        "--remote", action="store_true", help="ask the providers for their models (network)"
    )
    models.add_argument(
        "-p",
        "--provider",
        action="append",
        default=[],
        metavar="NAME",
        help="only this provider (repeatable)",
    )
    plugins = sub.add_parser("plugins", help="installed plugins and their status", parents=[common])
    plugins.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _common() -> argparse.ArgumentParser:
    """Options every command takes, so global options also work after it:
    ``chat "hi" -v``, ``chat -c file.toml "hi"``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        metavar="PATH",
        dest="sub_config",
        help="config file (default: $LLMKERNEL_CONFIG, ./llmkernel.toml, the user config dir)",
    )
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
    builtin = {"models", "plugins"}
    command = _command_name(argv)
    from llmkernel.errors import (
        AllCandidatesFailedError,
        ConfigError,
        InvalidRequestError,
        LLMKernelError,
        NoProviderError,
        PluginError,
    )

    verbose = 0
    kernel: Kernel | None = None
    try:
        registry = None
        if command is not None and command not in builtin:
            # plugin commands need the kernel's plugins before arguments are parsed
            kernel = _kernel(_config_arg(argv))
            registry = _plugin_commands(kernel, parser)
            if command not in registry.commands and command in _FIRST_PARTY:
                raise UsageError(_missing_command(command, kernel))
        args = parser.parse_args(argv)
        args.verbose += getattr(args, "sub_verbose", 0)
        args.config = getattr(args, "sub_config", None) or args.config
        verbose = args.verbose
        _configure_logging(args.verbose)
        if args.command is None:
            parser.print_help()
            return EXIT_OK
        if args.command in ("models", "plugins"):
            # diagnostics: they work when a configured provider cannot be created
            kernel, problems = _diagnostic_kernel(args.config)
            with kernel:
                if args.command == "models":
                    return _models(kernel, args, sys.stdout, problems)
                return _plugins(kernel, args, sys.stdout, problems)
        kernel = kernel or _kernel(args.config)
        with kernel:
            assert registry is not None
            result = registry.commands[args.command].run(args, kernel)
            return int(result or 0)
    except BrokenPipeError:
        return _broken_pipe()
    except AllCandidatesFailedError as exc:  # every provider failed: not the user's input
        return _fail(exc, EXIT_FAILED)
    except NoProviderError as exc:
        return _fail(_explain_no_provider(exc, kernel, _config_arg(argv)), EXIT_USAGE)
    except (ConfigError, InvalidRequestError, PluginError, UsageError) as exc:
        return _fail(exc, EXIT_USAGE)
    except LLMKernelError as exc:
        return _fail(exc, EXIT_FAILED)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: one line, the traceback with -vv
        if verbose >= 2:
            import traceback

            traceback.print_exc()
        hint = "" if verbose >= 2 else " (run with -vv for the traceback)"
        return _fail(f"{type(exc).__name__}: {exc}{hint}", EXIT_FAILED)


class UsageError(Exception):
    """A command-line argument the CLI refuses (exit 2, one line); plugin commands
    raise it too."""


def parse_option(text: str, reserved: Mapping[str, str] | None = None) -> tuple[str, Any]:
    """One ``-o KEY=VALUE`` (every command's ``-o`` is ``--option``): ``VALUE`` as
    JSON when it parses, else the string. A key in ``reserved`` is refused, naming
    the option to use instead."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise UsageError(f"option {text!r} must be KEY=VALUE")
    if reserved and key in reserved:
        raise UsageError(f"option {key!r} cannot be set with -o: use {reserved[key]}")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


#: the first-party commands -> the plugin (``llmkernel-<name>``) that adds each
_FIRST_PARTY = {
    **dict.fromkeys(
        ("chat", "repl", "logs", "templates", "keys", "embed", "embed-multi", "similar"), "cli"
    ),
    **dict.fromkeys(("serve", "gateway-keys"), "gateway"),
    "costs": "ledger",
    "stats": "routing",
    "cache": "cache",
    "tokens": "tiktoken",
    "batch": "batch",
}


def _missing_command(command: str, kernel: Kernel) -> str:
    """Why a first-party command is not there: its plugin is disabled or broken, or
    not installed."""
    plugin = _FIRST_PARTY[command]
    why = _plugin_problem(plugin, kernel.plugins, kernel.config)
    if why:
        return f"the {command!r} command comes with llmkernel-{plugin}, but {why}"
    return (
        f"the {command!r} command comes with llmkernel-{plugin}, which is not installed: "
        f"pip install llmkernel-{plugin}"
    )


def _broken_pipe() -> int:
    """The reader went away (``| head``): stop quietly, as Unix tools do. stdout is
    pointed at /dev/null so the interpreter's last flush raises nothing."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return EXIT_BROKEN_PIPE


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


def _fail(exc: Exception | str, code: int) -> int:
    text = str(exc)
    message = text.splitlines()[0] if text else type(exc).__name__
    print(f"llmkernel: error: {message}", file=sys.stderr)
    return code


def _kernel(config: str | None) -> Kernel:
    from llmkernel.kernel import Kernel

    return Kernel.from_config(config)


def _diagnostic_kernel(path: str | None) -> tuple[Kernel, dict[str, str]]:
    """A kernel that tolerates configured providers it cannot create; ``problems``
    maps each such provider to why (plugin disabled or failed, bad settings)."""
    from llmkernel.config import Config
    from llmkernel.errors import LLMKernelError
    from llmkernel.kernel import Kernel
    from llmkernel.models import Models

    problems: dict[str, str] = {}

    class DiagnosticModels(Models):
        def provider(self, name: str) -> Provider:
            try:
                return super().provider(name)
            except LLMKernelError as exc:
                if name not in self.config.providers:
                    raise
                ptype = self.config.providers[name].type
                why = _plugin_problem(ptype, self._setup.plugins, self.config)
                problems[name] = why or (str(exc).splitlines()[0] if str(exc) else repr(exc))
                return None  # type: ignore[return-value]  # skipped by providers()

    class DiagnosticKernel(Kernel):
        models_class = DiagnosticModels

    return DiagnosticKernel(Config.load(path)), problems


def _plugin_problem(name: str, statuses: Sequence[PluginStatus], config: Config) -> str | None:
    """``llmkernel.plugins.unavailable_reason``, imported when needed (--help stays fast)."""
    from llmkernel.plugins import unavailable_reason

    return unavailable_reason(name, statuses, config)


def _explain_no_provider(exc: Exception, kernel: Kernel | None, path: str | None) -> str:
    """``NoProviderError`` says "install llmkernel-X"; when X is installed but disabled
    or broken, say that instead."""
    message = str(exc)
    head, sep, _ = message.partition(": install ")
    if not sep:
        return message
    try:
        if kernel is not None:
            statuses, config = list(kernel.plugins), kernel.config
        else:
            from llmkernel.config import Config
            from llmkernel.plugins import load_plugins, new_manager

            config = Config.load(path)
            statuses = load_plugins(new_manager(), config.plugins)
    except Exception:
        return message
    for status in statuses:
        if status.status != "loaded" and f"{status.name!r}" in head:
            why = _plugin_problem(status.name, statuses, config)
            if why:
                return f"{head}: {why}"
    return message


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


def _models(
    kernel: Kernel, args: argparse.Namespace, out: TextIO, problems: Mapping[str, str]
) -> int:
    """Every configured provider, then the default instance of every installed
    provider plugin, with the models each knows without a network call (``--remote``:
    the models each lists over the network)."""
    from llmkernel.errors import LLMKernelError, NoProviderError

    config = kernel.config
    wanted = set(args.provider)
    rows: list[dict[str, Any]] = []
    usable: dict[str, Provider] = {}

    def add(name: str, ptype: str, plugin: str, status: str, note: str | None) -> None:
        provider = usable.get(name)
        models = (provider.declared_models() if provider is not None else []) or ["*"]
        for model in models:
            rows.append(
                {
                    "model": f"{name}/{model}",
                    "provider": name,
                    "type": ptype,
                    "plugin": plugin,
                    "status": status,
                    "note": note,
                }
            )

    for name, section in config.providers.items():
        if wanted and name not in wanted:
            continue
        if name in problems:
            add(name, section.type, "-", "unavailable", problems[name])
            continue
        usable[name] = provider = kernel.provider(name)
        add(name, provider.type, kernel.models.provider_plugins.get(name, "?"), "configured", None)
    for status in sorted(kernel.plugins, key=lambda p: p.name):
        name = status.name
        if name in config.providers or (wanted and name not in wanted):
            continue
        if status.status != "loaded":
            if not wanted and status.status == "disabled":
                continue  # listed by `llmkernel plugins`; nothing to say here
            why = _plugin_problem(name, kernel.plugins, config)
            add(name, name, name, "unavailable", why)
            continue
        if "provide_chat" not in status.hooks:
            continue
        try:
            usable[name] = provider = kernel.provider(name)
        except NoProviderError:
            continue  # the plugin serves other provider types, or none by default
        except LLMKernelError as exc:  # its defaults are not enough (an endpoint...)
            add(name, name, name, "needs config", str(exc).splitlines()[0])
            continue
        add(name, provider.type, kernel.models.provider_plugins.get(name, name), "installed", None)
    if args.remote:
        rows = _remote_models(kernel, rows, usable)
    aliases = {name: list(targets) for name, targets in sorted(config.models.items())}
    if args.json:
        data = {"models": rows, "aliases": aliases, "default_model": config.default_model}
        out.write(json.dumps(data, indent=2) + "\n")
        return EXIT_OK
    width = max([len(r["model"]) for r in rows] + [5])
    twidth = max([len(r["type"]) for r in rows] + [4])
    pwidth = max([len(r["plugin"]) for r in rows] + [6])
    out.write(f"{'MODEL':<{width}}  {'TYPE':<{twidth}}  {'PLUGIN':<{pwidth}}  STATUS\n")
    for row in rows:
        status = row["status"] + (f": {row['note']}" if row["note"] else "")
        out.write(
            f"{row['model']:<{width}}  {row['type']:<{twidth}}  {row['plugin']:<{pwidth}}  "
            f"{status}\n"
        )
    if aliases:
        out.write("\nALIASES\n")
        for name, targets in aliases.items():
            out.write(f"{name} = {', '.join(targets)}\n")
    out.write(f"\ndefault model: {config.default_model or 'none configured'}\n")
    return EXIT_OK


_REMOTE_TIMEOUT = 30.0


def _remote_models(
    kernel: Kernel, rows: list[dict[str, Any]], usable: Mapping[str, Provider]
) -> list[dict[str, Any]]:
    """Replace each usable provider's rows by what it lists over the network; a
    provider that fails keeps one row saying why."""
    import asyncio

    async def ask(name: str) -> list[str] | str:
        try:
            async with asyncio.timeout(_REMOTE_TIMEOUT):
                return [m.id for m in await kernel.alist_models(name)] or ["*"]
        except Exception as exc:  # one provider's failure is a row, not the end
            text = str(exc).splitlines()[0] if str(exc) else ""
            return f"{type(exc).__name__}: {text}".rstrip(": ")

    async def ask_all() -> list[list[str] | str]:
        return list(await asyncio.gather(*(ask(name) for name in usable)))

    answers = dict(zip(usable, kernel._portal.call(ask_all()), strict=True))
    result: list[dict[str, Any]] = []
    done: set[str] = set()
    for row in rows:
        name = row["provider"]
        if name not in answers:
            result.append(row)
            continue
        if name in done:
            continue
        done.add(name)
        answer = answers[name]
        if isinstance(answer, str):
            result.append({**row, "model": f"{name}/*", "status": "error", "note": answer})
        else:
            result.extend({**row, "model": f"{name}/{m}"} for m in answer)
    return result


def _plugins(
    kernel: Kernel, args: argparse.Namespace, out: TextIO, problems: Mapping[str, str]
) -> int:
    rows = sorted(kernel.plugins, key=lambda p: p.name)

    def detail(p: PluginStatus) -> str:
        if p.status == "loaded":
            return ", ".join(p.hooks)
        if p.status == "disabled":
            why = _plugin_problem(p.name, rows, kernel.config) or ""
            return why.removeprefix(f"plugin {p.name!r} is ")
        return p.error or ""

    if args.json:
        data = [
            {
                "name": p.name,
                "distribution": p.distribution,
                "version": p.version,
                "status": p.status,
                "hooks": list(p.hooks),
                "error": p.error if p.status != "disabled" else detail(p),
            }
            for p in rows
        ]
        out.write(json.dumps(data, indent=2) + "\n")
        for name, why in problems.items():  # JSON stays a list: problems on stderr
            print(f"llmkernel: warning: provider {name!r} cannot be used: {why}", file=sys.stderr)
        return EXIT_OK
    if not rows:
        out.write("no plugins installed\n")
    else:
        width = max(len(p.name) for p in rows)
        dwidth = max(len(f"{p.distribution or '-'} {p.version or ''}") for p in rows)
        out.write(f"{'NAME':<{width}}  {'DISTRIBUTION':<{dwidth}}  {'STATUS':<8}  HOOKS\n")
        for p in rows:
            dist = f"{p.distribution or '-'} {p.version or ''}".strip()
            out.write(f"{p.name:<{width}}  {dist:<{dwidth}}  {p.status:<8}  {detail(p)}\n")
    if problems:
        out.write("\nPROVIDERS THAT CANNOT BE USED\n")
        for name, why in problems.items():
            out.write(f"{name}: {why}\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
