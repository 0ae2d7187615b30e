"""A real ``redis-server`` for tests (never a fake): started in a temp dir on a free
loopback port or a unix socket, with no persistence (``--save '' --appendonly
no``), ready once it answers PING, stopped (or killed, and restarted on the same
address) by its PID.

Use the fixtures from any package's tests::

    from llmkernel_redis.testing import redis_server  # noqa: F401  (a fixture)

    def test_something(redis_server):
        url = redis_server.url

Without ``redis-server`` on PATH the tests are skipped with the reason, except when
``CI=true``, where they fail: CI installs it (``.ci/run``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["RedisServer", "redis_server", "redis_unix_server", "require_redis_server"]


def require_redis_server() -> str:
    """The path of ``redis-server``; skips the test without it (fails under CI)."""
    found = shutil.which("redis-server")
    if found is None:
        why = "redis-server is not installed (Debian: apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}; CI=true requires it")
        pytest.skip(why)
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process. ``url`` connects to it; :meth:`kill` and
    :meth:`start` again keep the address (a restart comes back empty)."""

    def __init__(self, binary: str, directory: Path, *, unix: bool = False) -> None:
        self.binary = binary
        self.directory = directory
        self.unix = unix
        self.port = 0 if unix else _free_port()
        self.socket = directory / "redis.sock" if unix else None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.socket is not None:
            return f"unix://{self.socket}"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--protected-mode", "no",
        ]  # fmt: skip
        if self.socket is not None:
            args += ["--unixsocket", str(self.socket), "--unixsocketperm", "700"]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.directory
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if self.ping():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("redis-server did not answer PING in time")
            time.sleep(0.02)

    def ping(self) -> bool:
        try:
            if self.socket is not None:
                sock = socket.socket(socket.AF_UNIX)
                sock.settimeout(1)
                sock.connect(str(self.socket))
            else:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=1)
        except OSError:
            return False
        with sock:
            try:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
            except OSError:
                return False

    def _signal(self, sig: int) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM by PID, then wait."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL by PID: gone at once, its data with it."""
        self._signal(signal.SIGKILL)


def _server(unix: bool) -> Iterator[RedisServer]:
    binary = require_redis_server()
    with tempfile.TemporaryDirectory(prefix="llmkernel-redis-") as directory:
        server = RedisServer(binary, Path(directory), unix=unix)
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh ``redis-server`` on a free loopback port."""
    yield from _server(unix=False)


@pytest.fixture
def redis_unix_server() -> Iterator[RedisServer]:
    """A fresh ``redis-server`` on a unix socket only (``--port 0``)."""
    yield from _server(unix=True)
