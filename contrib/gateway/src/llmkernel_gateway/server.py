"""Running the gateway: uvicorn with uvloop and httptools, one kernel per worker.

``llmkernel serve`` calls :func:`serve`. Without keys configured it listens on a
loopback address only. With ``--workers N`` uvicorn starts N processes, each
building its app from ``$LLMKERNEL_GATEWAY_CONFIG``; Prometheus runs in
multiprocess mode in a private directory, removed at exit. SIGTERM and SIGINT stop
accepting connections, let in-flight requests (streams too) finish within
``shutdown_timeout`` seconds, then close each kernel (flushing a ledger).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
import tempfile
from typing import Any

from llmkernel.config import Config
from llmkernel.errors import ConfigError
from llmkernel_gateway.handoff import SHARED_DIR_ENV
from llmkernel_gateway.metrics import MULTIPROC_ENV
from llmkernel_gateway.settings import GatewaySettings, load_settings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, settings: GatewaySettings) -> None:
    """Refuse to listen beyond loopback when no key is configured."""
    if not settings.keys and not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host!r} without keys: anyone who can reach it could "
            "spend your providers' credit. Create a key with `llmkernel gateway-keys create "
            "NAME --print-toml` and add it to [plugin.gateway.keys], or listen on 127.0.0.1"
        )


def _loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def serve(
    config: Config,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
) -> int:
    """Run the server until SIGTERM or SIGINT; returns the exit code."""
    import uvicorn

    from llmkernel_gateway import loglines
    from llmkernel_gateway.protocol import GatewayProtocol

    settings = load_settings(config)
    host = host or settings.host
    port = settings.port if port is None else port
    workers = workers or settings.workers
    check_exposure(host, settings)
    loglines.configure(settings.access_log)
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "loop": _loop(),
        "http": GatewayProtocol,  # httptools, its limits, one write per answer
        "ws": "none",  # no WebSocket route: an upgrade request is an ordinary request
        "proxy_headers": False,  # nothing here reads the client's address
        "lifespan": "on",
        "access_log": False,
        "log_level": "warning",
        "server_header": False,
        "timeout_graceful_shutdown": settings.shutdown_timeout,
        "timeout_keep_alive": settings.idle_timeout,  # idle between requests
        "h11_max_incomplete_event_size": settings.max_header_bytes,  # were h11 in use
    }
    print(
        f"llmkernel gateway on http://{host}:{port} ({len(settings.keys)} key(s), "
        f"{workers} worker(s), config {config.source})",
        file=sys.stderr,
        flush=True,
    )
    if workers == 1:
        from llmkernel_gateway.app import Gateway

        uvicorn.run(Gateway(config, settings=settings), **common)
        return 0
    if config.source.startswith("<"):
        raise ConfigError("--workers needs a config file (pass --config PATH)")
    metrics_dir = tempfile.mkdtemp(prefix="llmkernel-gateway-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    os.environ[SHARED_DIR_ENV] = metrics_dir  # the rate limiter's shared counts
    os.environ["LLMKERNEL_GATEWAY_CONFIG"] = os.path.abspath(config.source)
    try:
        _supervise(metrics_dir, workers, common)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _supervise(run_dir: str, workers: int, common: dict[str, Any]) -> None:
    """``uvicorn.run(app, workers=N)`` but for SIGHUP, which bumps the reload counter
    every worker reads (:mod:`llmkernel_gateway.runtime`): the new config answers
    within a poll, where uvicorn's own SIGHUP would restart every worker."""
    from uvicorn import Config
    from uvicorn.supervisors import Multiprocess

    from llmkernel_gateway.runtime import bump_reload

    class Supervisor(Multiprocess):
        # uvicorn>=0.52,<0.56 (pinned): Multiprocess(config, sockets), and its
        # signal loop calls handle_hup on SIGHUP
        def handle_hup(self) -> None:
            bump_reload(run_dir)

    config = Config("llmkernel_gateway.app:create_app", factory=True, workers=workers, **common)
    Supervisor(config, sockets=[config.bind_socket()]).run()


__all__ = ["check_exposure", "is_loopback", "serve"]
