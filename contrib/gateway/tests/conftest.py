"""The gateway as a real server: ``llmkernel serve`` in a subprocess on 127.0.0.1,
the mock provider and a fake OpenAI upstream (``FakeServer``) behind it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmkernel_gateway.keys import new_key, stored_hash
from llmkernel_http.testing.fake_server import FakeResponse, FakeServer, RecordedRequest

UPSTREAM_KEY_ENV = "GATEWAY_TEST_UPSTREAM_KEY"
UPSTREAM_KEY = "sk-upstream-SECRET-0123456789"
START_TIMEOUT = 60.0  # a cold start on a busy shared machine compiles every module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            out = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"the gateway exited with {process.returncode}: {out}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the gateway at {url} did not start within {START_TIMEOUT} s")


class Gateway:
    """A running ``llmkernel serve`` process."""

    def __init__(
        self,
        config: str,
        tmp: Path,
        *,
        workers: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = tmp / f"gateway-{self.port}.toml"
        self.config_path.write_text(config)
        self.stderr_path = tmp / f"gateway-{self.port}.log"
        self.stdout_path = tmp / f"gateway-{self.port}.out"
        # os.environ has the session's private XDG and HOME dirs (the root conftest)
        environ = {k: v for k, v in os.environ.items() if not k.startswith("LLMKERNEL_")}
        environ[UPSTREAM_KEY_ENV] = UPSTREAM_KEY
        environ.update(env or {})
        self.env = environ
        args = [
            sys.executable,
            "-m",
            "llmkernel_cli",
            "-c",
            str(self.config_path),
            "serve",
            "--port",
            str(self.port),
        ]
        if workers:
            args += ["--workers", str(workers)]
        self._stderr = self.stderr_path.open("wb")
        self._stdout = self.stdout_path.open("wb")
        self.process = subprocess.Popen(args, env=environ, stderr=self._stderr, stdout=self._stdout)
        try:
            wait_healthy(self.url, self.process)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"{exc} {self.log[-2000:]}") from None
        except BaseException:
            self.stop()
            raise

    @property
    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    @property
    def out(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> int | None:
        self.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self._stderr.close()
        self._stdout.close()
        return self.process.returncode


def own_dirs(home: Path) -> dict[str, str]:
    """XDG data, cache, state and config directories under ``home`` for one gateway
    (its own key store, response store and caches), as on a machine of its own."""
    return {f"XDG_{d}_HOME": str(home / d.lower()) for d in ("DATA", "CACHE", "STATE", "CONFIG")}


def key_table(name: str, key: str, **extra: Any) -> str:
    lines = [f'[plugin.gateway.keys."{name}"]', f'hash = "{stored_hash(key)}"']
    for field, value in extra.items():
        if isinstance(value, str):
            lines.append(f'{field} = "{value}"')
        elif isinstance(value, bool):
            lines.append(f"{field} = {'true' if value else 'false'}")
        elif isinstance(value, list):
            lines.append(
                f"{field} = [{', '.join(repr(v).replace(chr(39), chr(34)) for v in value)}]"
            )
        else:
            lines.append(f"{field} = {value}")
    return "\n".join(lines) + "\n"


class Upstream:
    """A fake OpenAI upstream whose answer each test sets with :meth:`answer`."""

    def __init__(self) -> None:
        self.server = FakeServer()
        self._handler: Callable[[RecordedRequest], FakeResponse] | None = None
        self.server.default = self._dispatch
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.server.url

    def _dispatch(self, request: RecordedRequest) -> FakeResponse:
        with self._lock:
            handler = self._handler
        if handler is None:
            return FakeResponse.json_body({"error": {"message": "no answer scripted"}}, status=500)
        return handler(request)

    def answer(self, *responses: FakeResponse) -> None:
        """Answer the next requests with ``responses`` in order (the last repeats)."""
        items = list(responses)

        def handler(request: RecordedRequest) -> FakeResponse:
            return items.pop(0) if len(items) > 1 else items[0]

        with self._lock:
            self._handler = handler
            self.server.requests.clear()

    def close(self) -> None:
        self.server.close()


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    fake = Upstream()
    yield fake
    fake.close()


@pytest.fixture(scope="session")
def tmp_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway")


@pytest.fixture(scope="session")
def keys() -> dict[str, str]:
    """Secret keys the shared gateway knows, by name."""
    return {"team": new_key(), "echo-only": new_key(), "admin": new_key()}


def base_config(upstream_url: str) -> str:
    return f"""
[retry]
attempts = 1

[providers.mock]
type = "mock"

[providers.up]
type = "openai"
base_url = "{upstream_url}/v1"
api_key_env = "{UPSTREAM_KEY_ENV}"
models = ["gpt-4o-mini"]

# the same upstream under another name, for the test that makes it refuse the
# gateway's key: a circuit breaker keeps a deployment open after that
[providers.upauth]
type = "openai"
base_url = "{upstream_url}/v1"
api_key_env = "{UPSTREAM_KEY_ENV}"
models = ["gpt-4o-mini"]

[models]
fast = ["mock/echo"]

[plugin.gateway]
max_body_bytes = 4096
request_timeout = 5.0
"""


@pytest.fixture(scope="session")
def gateway(upstream: Upstream, keys: dict[str, str], tmp_session: Path) -> Iterator[Gateway]:
    """One gateway for most tests: keys, the mock, and the fake upstream as ``up``."""
    config = (
        base_config(upstream.url)
        + key_table("team", keys["team"], tenant="team-tenant")
        + key_table("echo-only", keys["echo-only"], models=["mock/echo", "fast"])
        + key_table("admin", keys["admin"], admin=True)
    )
    server = Gateway(config, tmp_session)
    yield server
    server.stop()


# the Responses and Messages API tests' gateway and upstreams (defined beside their
# wire helpers; imported last, as that module uses the names above)
from .apis_wire import api_keys, apis, upstreams  # noqa: E402, F401
