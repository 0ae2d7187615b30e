"""``llmkernel keys set|list|path|remove``: provider API keys kept for the user.

Keys go to the system keyring when the ``keyring`` package is installed and has a
backend (``keys.json`` then lists the name with ``null``), else into ``keys.json``
itself, mode 0600. Providers read them with :func:`llmkernel_http.keys.stored_key` when
their ``api_key_env`` variable is unset. A key is read without echo and is never
printed, logged or put in an error.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel

__all__ = ["add_arguments", "run"]

_NAME = re.compile(r"^[A-Za-z0-9][\w.-]{0,63}$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("set", "list", "path", "remove"), nargs="?")
    parser.add_argument("name", nargs="?", help="provider instance name (openai, groq, ...)")
    parser.add_argument(
        "--value", help="the key (visible in your shell history: prefer the prompt or stdin)"
    )
    parser.add_argument(
        "--file", action="store_true", help="store in keys.json even when keyring is installed"
    )


def _keys() -> Any:
    """``llmkernel_http.keys``: the stored keys are for its providers."""
    try:
        from llmkernel_http import keys
    except ImportError:
        from llmkernel_cli.shell import UsageError

        raise UsageError(
            "stored keys are read by HTTP providers: install one (llmkernel-openai, "
            "llmkernel-anthropic, ...), which brings llmkernel-http"
        ) from None
    return keys


def _read() -> dict[str, Any]:
    keys_path = _keys().keys_path

    try:
        data = json.loads(keys_path().read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        from llmkernel_cli.shell import UsageError

        raise UsageError(f"{keys_path()} cannot be read: {type(exc).__name__}") from None
    return data if isinstance(data, dict) else {}


def _write(data: dict[str, Any]) -> None:
    from llmkernel_cli.paths import write_private

    write_private(_keys().keys_path(), json.dumps(data, indent=2, sort_keys=True) + "\n")


def _secret(args: argparse.Namespace) -> str:
    from llmkernel_cli.shell import UsageError

    if args.value is not None:
        value = args.value
    elif sys.stdin.isatty():
        import getpass

        value = getpass.getpass(f"Enter key for {args.name}: ")
    else:
        value = sys.stdin.readline()
    value = str(value).strip()
    if not value:
        raise UsageError("the key is empty: nothing stored")
    return value


def _keyring() -> Any:
    """The keyring module when installed with a usable backend, else None."""
    import importlib

    try:  # optional: llmkernel-cli[keyring]
        keyring = importlib.import_module("keyring")
        fail = importlib.import_module("keyring.backends.fail")
    except ImportError:
        return None
    if isinstance(keyring.get_keyring(), fail.Keyring):
        return None
    return keyring


def run(args: argparse.Namespace, kernel: Kernel) -> int:
    from llmkernel_cli.shell import UsageError

    keys = _keys()
    keys_path, KEYRING_SERVICE = keys.keys_path, keys.KEYRING_SERVICE
    action = args.action or "list"
    if action == "path":
        print(keys_path())
        return 0
    if action == "list":
        for name in sorted(_read()):
            print(name)
        return 0
    if not args.name or not _NAME.match(args.name):
        raise UsageError(f"keys {action} needs a provider name such as openai, not {args.name!r}")
    data = _read()
    store = None if args.file else _keyring()
    if action == "set":
        secret = _secret(args)
        if store is not None:
            store.set_password(KEYRING_SERVICE, args.name, secret)
            data[args.name] = None
            where = "the system keyring"
        else:
            data[args.name] = secret
            where = str(keys_path())
        _write(data)
        print(f"stored the key for {args.name!r} in {where}", file=sys.stderr)
        return 0
    if args.name not in data:
        raise UsageError(f"no stored key for {args.name!r}")
    if data.pop(args.name) is None and store is not None:
        try:
            store.delete_password(KEYRING_SERVICE, args.name)
        except Exception as exc:  # already gone from the keyring
            print(f"keyring: {type(exc).__name__}", file=sys.stderr)
    _write(data)
    print(f"removed the key for {args.name!r}", file=sys.stderr)
    return 0
