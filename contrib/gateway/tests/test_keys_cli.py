"""``llmkernel gateway-keys`` as a user runs it (``python -m llmkernel_cli``), on the
key store and through ``--url`` on a running ``llmkernel serve``: a key it makes is
accepted within 2 s, budgets changed live, rotation grace, revoke → 401 within 2 s,
and no secret or hash in what it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmkernel_gateway.keys import digest, new_key
from llmkernel_redis.testing import RedisServer, redis_server

from .apis_wire import chat_answer
from .conftest import Gateway, Upstream, base_config, free_port, key_table

__all__ = ["redis_server"]  # the fixture

#: the issue's bound for a change to reach every worker
WITHIN = 2.0
HI = [{"role": "user", "content": "hi"}]


class Cli:
    """``llmkernel [-c config] gateway-keys ACTION ... [extra]`` in a subprocess; what
    it prints must not hold a value of ``env`` (an admin key)."""

    def __init__(
        self,
        config: Path | None,
        cwd: Path,
        env: dict[str, str] | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.config = config
        self.cwd = cwd
        self.extra = extra
        self.secrets = list((env or {}).values())
        # os.environ has the session's private XDG and HOME dirs (the root conftest)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LLMKERNEL_")}
        self.env.update(env or {})

    def __call__(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "llmkernel_cli"]
        if self.config is not None:
            command += ["-c", str(self.config)]
        result = subprocess.run(
            [*command, "gateway-keys", *args, *self.extra],
            env={**self.env, **(env or {})},
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        for secret in [*self.secrets, *(env or {}).values()]:
            assert secret not in result.stdout + result.stderr
        return result

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))


def status(url: str, key: str, model: str = "up/gpt-4o-mini") -> int:
    response = httpx.post(
        f"{url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": model, "messages": HI},
        timeout=30,
    )
    return response.status_code


def eventually(check: Callable[[], bool], within: float = WITHIN) -> float:
    """Seconds until ``check()`` holds; fails past ``within``."""
    started = time.monotonic()
    while True:
        if check():
            return time.monotonic() - started
        if time.monotonic() - started > within:
            pytest.fail(f"not within {within} s")
        time.sleep(0.05)


def settled(
    url: str, key: str, code: int, within: float = WITHIN, model: str = "up/gpt-4o-mini"
) -> float:
    """Seconds until four calls in a row (over both workers) answer ``code``."""
    return eventually(lambda: all(status(url, key, model) == code for _ in range(4)), within)


def admin_get(url: str, admin: str, path: str) -> Any:
    response = httpx.get(f"{url}{path}", headers={"authorization": f"Bearer {admin}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def no_secrets(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text
        assert digest(secret) not in text
    assert "sha256" not in text


@pytest.fixture(scope="module")
def served(
    upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, Path, dict[str, str]]]:
    """A gateway of two workers whose key store and ledger the CLI shares (the same
    config file)."""
    tmp = tmp_path_factory.mktemp("keys-cli")
    keys = {"admin": new_key(), "plain": new_key()}
    config = (
        base_config(upstream.url)
        + f'keys_path = "{tmp / "keys.db"}"\n'  # in [plugin.gateway], base_config's last table
        + f'\n[plugin.ledger]\npath = "{tmp / "ledger.db"}"\n'
        # the test's own price (not the model's real one): a call costs $0.002
        + '\n[prices."up/gpt-4o-mini"]\ninput = 1\noutput = 2\nsource = "test"\n'
        + key_table("admin", keys["admin"], admin=True)
        + key_table("plain", keys["plain"])
    )
    server = Gateway(config, tmp, workers=2)
    upstream.answer(chat_answer("hello", prompt=1000, completion=500))
    for _ in range(4):  # each worker's first call loads what it loads lazily
        status(server.url, keys["plain"])
    try:
        yield server, tmp, keys
    finally:
        server.stop()


def _lifecycle(cli: Cli, server: Gateway, upstream: Upstream, name: str) -> list[str]:
    """create → list → accepted → spend → update → rotate with grace → revoke; the
    secrets it printed."""
    url = server.url
    upstream.answer(chat_answer("hello", prompt=1000, completion=500))
    created = cli.json(
        "create",
        name,
        "--model",
        "up/*",
        "--budget-day",
        "5",
        "--budget-month",
        "50",
        "--rpm",
        "1000",
    )
    secret = created["key"]
    assert secret.startswith("lk-") and created["budget"] == {"day": "5", "month": "50"}

    listing = cli.ok("list")
    no_secrets(listing, secret)
    (line,) = [row for row in listing.splitlines() if row.startswith(name + " ")]
    assert "store" in line and "active" in line
    assert "$0 of $5" in line and "$0 of $50" in line and "1000" in line
    assert "config (read-only)" in next(r for r in listing.splitlines() if r.startswith("admin"))

    took = settled(url, secret, 200)
    print(f"{name}: accepted {took:.2f} s after the CLI exited")

    shown = cli.json("show", name)
    no_secrets(json.dumps(shown), secret)
    assert shown["spend"]["requests"] >= 1
    assert shown["spend"]["day"] == shown["spend"]["total"]
    calls = shown["spend"]["requests"]
    assert Decimal(shown["spend"]["day"]) == calls * Decimal("0.002")  # the ledger's cost
    human = cli.ok("show", name)
    no_secrets(human, secret)
    assert f"today ${calls * Decimal('0.002')} of $5" in human

    # a budget lowered below what was spent: refused within 2 s, the month kept
    updated = cli.json("update", name, "--budget-day", "0.000001")
    assert updated["budget"] == {"day": "0.000001", "month": "50"}
    settled(url, secret, 429)
    cli.ok("update", name, "--budget-day", "none")
    assert cli.json("show", name)["budget"] == {"month": "50"}
    settled(url, secret, 200)

    cli.ok("update", name, "--disable")
    assert "disabled" in next(r for r in cli.ok("list").splitlines() if r.startswith(name + " "))
    settled(url, secret, 401)
    cli.ok("update", name, "--enable")
    settled(url, secret, 200)

    rotated = cli.json("rotate", name, "--grace", "10")
    new = rotated["key"]
    assert new != secret and rotated["previous_secret_valid_until"] is not None
    settled(url, new, 200)
    settled(url, secret, 200, within=0)  # still in its grace period, on each worker
    wait = rotated["previous_secret_valid_until"] - time.time()
    time.sleep(max(0.0, wait))
    settled(url, secret, 401)
    assert status(url, new) == 200

    # the gateway writes keys' last use every 5 s; the first call was over 6 s ago
    eventually(lambda: cli.json("show", name)["last_used"] is not None, 10)
    assert "never" not in next(r for r in cli.ok("list").splitlines() if r.startswith(name + " "))

    revoked = cli("revoke", name)
    assert revoked.returncode == 0, revoked.stderr
    took = settled(url, new, 401)
    print(f"{name}: refused {took:.2f} s after the CLI exited")
    assert name not in cli.ok("list")
    assert cli("show", name).returncode == 2
    return [secret, new]


def test_the_key_lifecycle_on_the_key_store(
    served: tuple[Gateway, Path, dict[str, str]], upstream: Upstream
) -> None:
    server, tmp, keys = served
    cli = Cli(server.config_path, tmp)
    secrets = _lifecycle(cli, server, upstream, "cli-local")
    audit = admin_get(server.url, keys["admin"], "/admin/audit?limit=1000")["data"]
    mine = [entry for entry in audit if entry["target"] == "cli-local"]
    actions = [entry["action"] for entry in reversed(mine)]
    assert actions[0] == "key.create" and actions[-1] == "key.revoke" and "key.rotate" in actions
    assert {entry["actor"] for entry in mine} == {f"cli:{_user()}"}
    no_secrets(json.dumps(audit), *secrets)


def test_the_key_lifecycle_through_a_running_gateway(
    served: tuple[Gateway, Path, dict[str, str]], upstream: Upstream
) -> None:
    server, tmp, keys = served
    # no config file: everything goes through the admin API
    remote = Cli(None, tmp, env={"LLMKERNEL_ADMIN_KEY": keys["admin"]}, extra=("--url", server.url))
    secrets = _lifecycle(remote, server, upstream, "cli-remote")
    audit = admin_get(server.url, keys["admin"], "/admin/audit?limit=1000")["data"]
    assert {e["actor"] for e in audit if e["target"] == "cli-remote"} == {"admin"}
    no_secrets(json.dumps(audit), *secrets)


def _user() -> str:
    import getpass

    return getpass.getuser()


def test_url_errors_name_the_status_and_the_gateways_message(
    served: tuple[Gateway, Path, dict[str, str]],
) -> None:
    server, tmp, keys = served
    cli = Cli(None, tmp)
    missing = cli("list", "--url", server.url)
    assert missing.returncode == 2
    assert "LLMKERNEL_ADMIN_KEY" in missing.stderr and "--admin-key-env" in missing.stderr

    other = cli(
        "list", "--url", server.url, "--admin-key-env", "MY_ADMIN", env={"MY_ADMIN": keys["admin"]}
    )
    assert other.returncode == 0, other.stderr
    assert "admin" in other.stdout and "config (read-only)" in other.stdout
    no_secrets(other.stdout, *keys.values())

    plain = cli("list", "--url", server.url, env={"LLMKERNEL_ADMIN_KEY": keys["plain"]})
    assert plain.returncode == 2
    assert "answered 403" in plain.stderr and "'plain' is not an admin key" in plain.stderr
    assert keys["plain"] not in plain.stderr

    admin = {"LLMKERNEL_ADMIN_KEY": keys["admin"]}
    unknown = cli("show", "ghost", "--url", server.url, env=admin)
    assert unknown.returncode == 2
    assert "answered 404" in unknown.stderr and "no key named 'ghost'" in unknown.stderr
    bad = cli("create", "x1", "--budget-day", "-3", "--url", server.url, env=admin)
    assert bad.returncode == 2
    assert "answered 400" in bad.stderr and "--budget-day: budget.day must be" in bad.stderr
    read_only = cli("revoke", "plain", "--url", server.url, env=admin)
    assert read_only.returncode == 2 and "read-only" in read_only.stderr
    assert status(server.url, keys["plain"], "mock/echo") == 200  # nothing lost

    away = cli("list", "--url", f"http://127.0.0.1:{free_port()}", env=admin)
    assert away.returncode == 1 and "cannot reach the gateway at" in away.stderr


class InProcess(Cli):
    """The same through the CLI's ``main`` in this process (quicker: for the many
    small cases)."""

    def __init__(self, config: Path, cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
        super().__init__(config, cwd)
        self.capsys = capsys

    def __call__(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        from llmkernel_cli.shell import main

        assert env is None
        self.capsys.readouterr()
        code = main(["-c", str(self.config), "gateway-keys", *args])
        out, err = self.capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)


@pytest.fixture
def store_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Cli:
    """The CLI on a key store of its own, with one config-file key."""
    for name in list(os.environ):
        if name.startswith("LLMKERNEL_"):
            monkeypatch.delenv(name)
    config = tmp_path / "llmkernel.toml"
    config.write_text(
        f'[plugin.gateway]\nkeys_path = "{tmp_path / "keys.db"}"\n'
        f'[plugin.ledger]\npath = "{tmp_path / "ledger.db"}"\n'
        + key_table("from-file", new_key(), admin=True)
    )
    return InProcess(config, tmp_path, capsys)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("create", "bad name!"), "NAME: name must be 1 to 64 letters"),
        (
            ("create", "k2", "--budget-day", "abc"),
            "--budget-day: budget.day must be a non-negative",
        ),
        (
            ("create", "k2", "--rpm", "-3"),
            "--rpm: rate_limit.requests_per_minute must be a positive",
        ),
        (
            ("create", "k2", "--tpm", "lots"),
            "--tpm: rate_limit.tokens_per_minute must be a positive",
        ),
        (
            ("create", "k2", "--expires", "yesterday"),
            "--expires: expires_at 'yesterday' is not an ISO",
        ),
        (("create", "k2", "--expires", "+3y"), "--expires: '+3y' is not a span"),
        (("create", "k2", "--metadata", "novalue"), "--metadata: 'novalue' must be KEY=VALUE"),
        (("create", "k2", "--metadata", "tenant=x"), "metadata.tenant is set by the gateway"),
        (("create", "k2", "--print-toml", "--rpm", "3"), "not --rpm"),
        (("create", "kept"), "a key named 'kept' exists already"),
        (("create", "from-file"), "'from-file' is defined in the config file"),
        (("update", "from-file", "--rpm", "5"), "read-only here"),
        (("rotate", "from-file"), "read-only here"),
        (("revoke", "from-file"), "read-only here"),
        (("update", "kept"), "nothing to change"),
        (("update", "kept", "--budget-month", "x"), "--budget-month: budget.month must be"),
        (("rotate", "kept", "--grace", "-1"), "--grace: grace must be a number of seconds"),
        (("show", "ghost"), "no key named 'ghost'"),
        (("update", "ghost", "--disable"), "no key named 'ghost'"),
        (("rotate", "ghost"), "no key named 'ghost'"),
        (("revoke", "ghost"), "no key named 'ghost'"),
    ],
)
def test_bad_input_is_refused_naming_it_and_loses_nothing(
    store_cli: Cli, args: tuple[str, ...], words: str
) -> None:
    made = store_cli.json("create", "kept", "--budget-total", "12.5", "--metadata", "team=a")
    before = store_cli.json("list")
    result = store_cli(*args)
    assert result.returncode == 2, result.stdout
    assert words in result.stderr
    assert result.stderr.startswith("llmkernel: error: ") and result.stdout == ""
    assert store_cli.json("list") == before
    no_secrets(result.stderr, made["key"])


def test_print_toml_makes_a_config_file_key_and_stores_nothing(store_cli: Cli) -> None:
    out = store_cli.ok("create", "for-file", "--model", "mock/*", "--tenant", "t", "--print-toml")
    assert "[plugin.gateway.keys.for-file]" in out and 'models = ["mock/*"]' in out
    assert 'tenant = "t"' in out
    assert [row["name"] for row in store_cli.json("list")] == ["from-file"]


def test_list_and_show_in_words_never_print_a_secret(store_cli: Cli) -> None:
    made = store_cli.json(
        "create", "k1", "--expires", "+30d", "--tpm", "4000", "--metadata", "team=a", "--admin"
    )
    assert made["admin"] is True and made["rate_limit"] == {"tokens_per_minute": 4000}
    assert made["expires_at"] == pytest.approx(time.time() + 30 * 86400, abs=120)
    listing = store_cli.ok("list")
    header = " ".join(listing.splitlines()[0].split())
    assert header == "NAME SOURCE STATE TENANT TODAY MONTH TOTAL RPM TPM LAST USED"
    assert "k1 (admin)" in listing and "4000" in listing and "from-file (admin)" in listing
    shown = store_cli.ok("show", "k1")
    assert "metadata:   team=a" in shown and "tokens_per_minute 4000" in shown
    assert "last used:  never" in shown and "source:     store" in shown
    merged = store_cli.json("update", "k1", "--metadata", "env=prod", "--metadata", "team=")
    assert merged["metadata"] == {"env": "prod"}
    rotated = store_cli.ok("rotate", "k1", "--grace", "3600")
    assert rotated.count("lk-") == 1 and "the previous secret works until" in rotated
    (line,) = [r for r in store_cli.ok("list").splitlines() if r.startswith("k1 ")]
    assert "active, rotating" in line
    assert "old secret: valid until" in store_cli.ok("show", "k1")
    at_once = store_cli.ok("rotate", "k1", "--grace", "0")
    assert "the previous secret is refused from now on" in at_once
    assert "rotating" not in store_cli.ok("list")
    for text in (listing, shown, json.dumps(store_cli.json("list")), store_cli.ok("show", "k1")):
        no_secrets(text, made["key"])


def test_an_expired_key_is_listed_as_expired(store_cli: Cli) -> None:
    store_cli.ok("create", "old", "--expires", "2020-01-01T00:00:00Z")
    (line,) = [r for r in store_cli.ok("list").splitlines() if r.startswith("old ")]
    assert " expired " in line
    assert "expires:    2020-01-01T00:00:00Z" in store_cli.ok("show", "old")
    renewed = store_cli.json("update", "old", "--expires", "never")
    assert renewed["state"] == "active" and renewed["expires_at"] is None


def test_on_redis_a_key_the_cli_makes_opens_on_every_instance(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """``[redis]`` set: the CLI writes the key store in Redis, which two instances
    (each with data dirs of its own, as on two machines) read."""
    from .test_redis_health import config as redis_config

    admin = new_key()
    config = redis_config(redis_server.url) + key_table("ops", admin, admin=True)
    servers = []
    for name in ("one", "two"):
        home = tmp_path / name
        home.mkdir()
        env = {f"XDG_{d}_HOME": str(home / d.lower()) for d in ("DATA", "CACHE", "STATE")}
        servers.append(Gateway(config, home, env=env))
    try:
        cli = Cli(servers[0].config_path, tmp_path, env={"XDG_DATA_HOME": str(tmp_path / "cli")})
        made = cli.json("create", "fleet-key", "--model", "mock/*", "--rpm", "500")
        shown = cli.ok("show", "fleet-key")
        assert "source:     store" in shown and "requests_per_minute 500" in shown
        for server in servers:
            settled(server.url, made["key"], 200, model="mock/echo")
        assert "Redis" in cli("revoke", "fleet-key").stdout
        for server in servers:
            settled(server.url, made["key"], 401, model="mock/echo")
        assert "fleet-key" not in cli.ok("list")
    finally:
        for server in servers:
            server.stop()
