"""The CLI commands this package adds: ``llmkernel serve`` and
``llmkernel gateway-keys`` (:mod:`llmkernel_gateway.keys_cli`)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from llmkernel_gateway.keys_cli import keys, keys_arguments

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel


def serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (default: [plugin.gateway] host)")
    parser.add_argument("--port", type=int, help="port (default: [plugin.gateway] port, 4000)")
    parser.add_argument("--workers", type=int, help="worker processes (default: 1)")


def serve(args: argparse.Namespace, kernel: Kernel) -> int:
    from llmkernel_gateway.server import serve as run

    # The CLI's kernel only carried the config: each worker builds its own kernel
    # on its own event loop.
    return run(kernel.config, host=args.host, port=args.port, workers=args.workers)


__all__ = ["keys", "keys_arguments", "serve", "serve_arguments"]
