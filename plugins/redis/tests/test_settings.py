"""[redis] is checked strictly, redacts its password, and costs nothing when absent."""

from __future__ import annotations

import subprocess
import sys

import pytest

import llmkernel_redis.plugin as redis_plugin
from llmkernel import Kernel
from llmkernel.config import Config
from llmkernel.errors import ConfigError
from llmkernel_redis.settings import RedisSettings, parse_settings, redact_url
from llmkernel_redis.shared import shared_for


def test_every_key_and_its_default() -> None:
    settings = parse_settings({"url": "redis://cache.internal:6380/2"}, source="<test>")
    assert settings == RedisSettings(url="redis://cache.internal:6380/2")
    assert (settings.timeout, settings.connect_timeout, settings.pool_size) == (0.25, 0.25, 32)
    assert (settings.instances, settings.fail_closed, settings.cache_url) == (1, False, None)
    full = parse_settings(
        {
            "url": "rediss://user:pw@redis.internal:6379/0",
            "cache_url": "unix:///run/redis/cache.sock?db=1",
            "key_prefix": "prod:",
            "timeout": 0.1,
            "connect_timeout": 0.5,
            "pool_size": 8,
            "instances": 3,
            "fail_closed": True,
            "retry_interval": 2.0,
        },
        source="<test>",
    )
    assert full.instances == 3 and full.cache_url == "unix:///run/redis/cache.sock?db=1"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"url": "redis://h/0", "urll": "x"}, r"unknown key 'urll' in \[redis\] in <test>"),
        ({"url": "http://h:6379"}, r"url must start with redis://, rediss:// or unix://"),
        ({"url": "unix://"}, r"unix:// URL needs the socket's path"),
        ({"url": "redis:///0"}, r"redis:// needs a host"),
        ({"url": "redis://h", "cache_url": "memcached://h"}, r"cache_url must start with"),
        ({"url": "redis://h", "timeout": 0}, r"timeout must be positive"),
        ({"url": "redis://h", "instances": 0}, r"instances must be positive"),
        ({"url": "redis://h", "instances": "2"}, r"'instances' in \[redis\]"),
        ({"url": "redis://h", "key_prefix": "a b"}, r"key_prefix must be"),
        (
            {"cache_url": "redis://h"},
            r"missing required key 'url' in \[redis\].*LLMKERNEL_REDIS_URL",
        ),
    ],
)
def test_bad_settings_are_refused_naming_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_settings(table, source="<test>")


def test_the_password_never_shows() -> None:
    url = "redis://admin:s3cret-pw@redis.internal:6379/0"
    assert redact_url(url) == "redis://***@redis.internal:6379/0"
    settings = parse_settings({"url": url, "cache_url": url}, source="<test>")
    assert "s3cret" not in repr(settings)
    with pytest.raises(ConfigError) as info:
        parse_settings({"url": "http://admin:s3cret-pw@h/"}, source="<test>")
    assert "s3cret" not in str(info.value)


def test_the_environment_sets_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMKERNEL_REDIS_URL", "redis://from-env:6379/1")
    kernel = Kernel.from_config({}, plugins=[redis_plugin], entry_points=False)
    with kernel:
        shared = shared_for(kernel, "ratelimit")
        assert shared is not None and shared.settings.url == "redis://from-env:6379/1"
        # building it did no I/O: nothing listens at from-env, and nothing failed
        assert kernel.stats()["redis"]["state"] == "ok"


def test_a_bad_table_stops_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMKERNEL_REDIS_URL", raising=False)
    with pytest.raises(ConfigError, match="unknown key 'pool'"):
        Kernel.from_config(
            {"redis": {"url": "redis://h/0", "pool": 3}}, plugins=[redis_plugin], entry_points=False
        )


def test_a_plugin_opts_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMKERNEL_REDIS_URL", raising=False)
    config = Config.load({"redis": {"url": "redis://h/0"}, "plugin": {"cache": {"shared": False}}})
    kernel = Kernel(config, plugins=[redis_plugin], entry_points=False)
    with kernel:
        assert shared_for(kernel, "cache") is None
        assert shared_for(kernel, "ratelimit") is shared_for(kernel, "budgets") is not None
    without = Kernel.from_config({}, plugins=[redis_plugin], entry_points=False)
    with without:
        assert shared_for(without, "ratelimit") is None
        assert "redis" not in without.stats()


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "XDG_CONFIG_HOME": "/nonexistent"},
    ).stdout
    return set(out.split())


def test_no_redis_module_without_the_table() -> None:
    assert not {m for m in _modules_after("import llmkernel") if m.startswith("redis")}
    loaded = _modules_after(
        "from llmkernel import Kernel\n"
        "k = Kernel.from_config({'plugin': {'ratelimit': {'limits': {'*': "
        "{'requests_per_minute': 5}}}}})\n"
        "k.chat('mock/echo', 'hi')\nk.close()"
    )
    assert "llmkernel_redis.plugin" in loaded  # installed, its entry point loaded
    assert not {m for m in loaded if m.split(".")[0] == "redis"}
    assert "llmkernel_redis.link" not in loaded and "llmkernel_ratelimit.shared" not in loaded


def test_the_table_brings_redis_in() -> None:
    loaded = _modules_after(
        "from llmkernel import Kernel\n"
        "k = Kernel.from_config({'redis': {'url': 'redis://127.0.0.1:1/0'}})\nk.close()"
    )
    assert "redis.asyncio" in loaded and "llmkernel_redis.link" in loaded
