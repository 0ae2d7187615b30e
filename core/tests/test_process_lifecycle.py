"""The kernel owns process lifecycle: exit hooks of an unclosed kernel run at
interpreter exit, not after close; fork hooks run in a forked child."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from llmkernel import ConfigError, Kernel


def run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_exit_hooks_run_at_exit_newest_first_when_the_kernel_is_not_closed() -> None:
    out = run(
        """
        from llmkernel import Kernel
        kernel = Kernel.from_config({}, entry_points=False)
        kernel.lifecycle.on_exit(lambda: print("first", flush=True))
        kernel.lifecycle.on_exit(lambda: print("second", flush=True))
        def broken(): raise RuntimeError("boom")
        kernel.lifecycle.on_exit(broken)
        print("end", flush=True)
        """
    )
    assert out.split() == ["end", "second", "first"]


def test_a_closed_kernel_runs_no_exit_hook() -> None:
    out = run(
        """
        from llmkernel import Kernel
        kernel = Kernel.from_config({}, entry_points=False)
        kernel.lifecycle.on_exit(lambda: print("exit hook", flush=True))
        kernel.lifecycle.add_closer(lambda: print("closer", flush=True))
        kernel.close()
        print("end", flush=True)
        """
    )
    assert out.split() == ["closer", "end"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_hooks_run_in_the_child_only() -> None:
    out = run(
        """
        import os
        from llmkernel import Kernel
        kernel = Kernel.from_config({}, entry_points=False)
        kernel.lifecycle.on_fork(lambda: print("child", os.getpid() != parent, flush=True))
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        print("parent", flush=True)
        """
    )
    assert out.split() == ["child", "True", "parent"]


def test_redis_settings_need_the_redis_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMKERNEL_REDIS_URL", raising=False)
    # as where llmkernel-redis is not installed (in this workspace it is)
    import llmkernel._entry_points as found

    every = found.entry_points
    monkeypatch.setattr(
        found, "entry_points", lambda group: [ep for ep in every(group) if ep.name != "redis"]
    )
    with pytest.raises(ConfigError, match=r"\[redis\].*names plugin 'redis'"):
        Kernel.from_config({"redis": {"url": "redis://127.0.0.1:1/0"}}, entry_points=False)
    monkeypatch.setenv("LLMKERNEL_REDIS_URL", "redis://127.0.0.1:1/0")
    with pytest.raises(ConfigError, match="LLMKERNEL_REDIS_URL"):
        Kernel.from_config({}, entry_points=False)
