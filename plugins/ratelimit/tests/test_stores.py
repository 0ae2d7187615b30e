"""Every ``LimitStore`` keeps the same contract: the memory store, the file store
(one set of windows for every process of a machine), and any shared backend that
runs these tests. The file store counts in slices of a window, so it may hold a
claim up to one slice (``window / slices``) longer than the memory store."""

from __future__ import annotations

import math
import os
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmkernel_ratelimit.filestore import FileStore
from llmkernel_ratelimit.store import Claim, LimitStore, MemoryStore, Ticket

WINDOW = 10.0
T0 = 1000.0  # every store sees times of one clock (monotonic seconds)


def claim(key: str = "k", limit: float = 3, window: float = WINDOW, amount: float = 1) -> Claim:
    return Claim(key=key, limit=limit, window=window, amount=amount)


@pytest.fixture(params=["memory", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[LimitStore, float]]:
    """A store and how much later than the exact time it may free a claim."""
    if request.param == "memory":
        yield MemoryStore(), 0.0
        return
    made = FileStore(tmp_path / "buckets", capacity=64, slices=20)
    yield made, WINDOW / 20 + 1e-6
    made.close()


def test_a_window_admits_its_limit_then_waits_for_the_oldest(store: Any) -> None:
    limits, slack = store
    for t in (0.0, 1.0, 2.0):
        assert isinstance(limits.take([claim()], T0 + t), Ticket)
    wait = limits.take([claim()], T0 + 3.0)
    assert 7.0 <= wait <= 7.0 + slack + 1e-9  # the claim of t=0 leaves at 10
    assert not isinstance(limits.take([claim()], T0 + 9.9), Ticket)
    assert isinstance(limits.take([claim()], T0 + 10.0 + slack), Ticket)


def test_all_or_nothing_across_buckets(store: Any) -> None:
    limits, _ = store
    assert isinstance(limits.take([claim("a", limit=1)], T0), Ticket)
    assert limits.take([claim("b", limit=5), claim("a", limit=1)], T0 + 1.0) > 0
    assert limits.states(T0 + 1.0).get("b") is None or limits.states(T0 + 1.0)["b"].used == 0


def test_a_claim_larger_than_the_limit_never_fits(store: Any) -> None:
    limits, _ = store
    assert math.isinf(limits.take([claim(limit=10, amount=11)], T0))  # type: ignore[arg-type]


def test_correct_refunds_and_charges(store: Any) -> None:
    limits, _ = store
    ticket = limits.take([claim(limit=100, amount=80)], T0)
    assert isinstance(ticket, Ticket)
    assert limits.take([claim(limit=100, amount=30)], T0 + 1.0) > 0
    limits.correct(ticket, {"k": 20})
    assert isinstance(limits.take([claim(limit=100, amount=30)], T0 + 1.0), Ticket)
    assert limits.states(T0 + 1.0)["k"].used == pytest.approx(50)
    limits.correct(ticket, {"k": 90})  # charged more than it reserved
    assert limits.states(T0 + 1.0)["k"].used == pytest.approx(120)


def test_observe_holds_what_the_provider_says_is_used_until_its_reset(store: Any) -> None:
    limits, _ = store
    limits.observe("k", limit=10, remaining=2, reset=5.0, now=T0)
    inf = float("inf")
    assert isinstance(limits.take([claim(limit=inf, window=60, amount=2)], T0), Ticket)
    wait = limits.take([claim(limit=inf, window=60, amount=1)], T0)
    assert 5.0 - 60 / 20 <= wait <= 5.0 + 60 / 20  # a slice of a 60 s window either way
    state = limits.states(T0)["k"]
    assert (state.limit, state.remaining) == (10, 0)


def test_block_until(store: Any) -> None:
    limits, _ = store
    limits.block("k", until=T0 + 50.0, limit=float("inf"), window=60.0)
    assert limits.take([claim(limit=float("inf"))], T0 + 40.0) == pytest.approx(10.0)
    assert isinstance(limits.take([claim(limit=float("inf"))], T0 + 50.0), Ticket)


def test_states_report_every_bucket_in_use(store: Any) -> None:
    limits, _ = store
    limits.take([claim("a", limit=4), claim("b", limit=2, amount=2)], T0)
    states = limits.states(T0 + 1.0)
    assert states["a"].used == 1 and states["a"].remaining == 3
    assert states["b"].remaining == 0 and 8.9 <= states["b"].reset <= 10.0


# ---------------------------------------------------------------------- the file store


_TAKE_MANY = """
import sys, time
from llmkernel_ratelimit.filestore import FileStore
from llmkernel_ratelimit.store import Claim, Ticket
limits = FileStore(sys.argv[1])
one = [Claim(key="shared", limit=50, window=60, amount=1)]
print(sum(isinstance(limits.take(one, time.monotonic()), Ticket) for _ in range(40)))
"""


def test_the_file_store_is_one_limit_for_several_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "buckets")
    FileStore(path).close()
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _TAKE_MANY, path], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    admitted = [int(worker.communicate(timeout=60)[0]) for worker in workers]
    assert sum(admitted) == 50  # 160 tries, 4 processes, one limit of 50
    assert FileStore(path).states(time.monotonic())["shared"].used == 50


def test_the_file_is_private_and_a_reboot_starts_it_empty(tmp_path: Path) -> None:
    path = tmp_path / "run" / "buckets"
    limits = FileStore(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    now = time.monotonic()
    assert isinstance(limits.take([claim(limit=1, window=60)], now), Ticket)
    assert not isinstance(FileStore(path).take([claim(limit=1, window=60)], now), Ticket)
    limits.close()
    with path.open("r+b") as file:  # as if written before the last boot
        header = struct.Struct("<4sIIId")
        magic, version, capacity, slices, boot = header.unpack(file.read(header.size))
        file.seek(0)
        file.write(header.pack(magic, version, capacity, slices, boot - 3600))
    assert isinstance(FileStore(path).take([claim(limit=1, window=60)], now), Ticket)


def test_a_forked_child_locks_for_itself(tmp_path: Path) -> None:
    limits = FileStore(tmp_path / "buckets")
    assert isinstance(limits.take([claim(limit=2, window=60)], time.monotonic()), Ticket)
    pid = os.fork()
    if pid == 0:  # the child: its own lock, the same windows
        limits.reopen()
        ok = isinstance(limits.take([claim(limit=2, window=60)], time.monotonic()), Ticket)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert limits.states(time.monotonic())["k"].used == 2


def test_a_full_file_reuses_idle_buckets_then_takes_over_the_oldest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    limits = FileStore(tmp_path / "buckets", capacity=16)
    for i in range(16):  # each bucket idle after its window
        assert isinstance(limits.take([claim(f"old{i}", window=1)], T0), Ticket)
    for i in range(16):
        assert isinstance(limits.take([claim(f"new{i}", window=60)], T0 + 5), Ticket)
    assert all(k.startswith("new") for k in limits.states(T0 + 5))
    assert isinstance(limits.take([claim("one more", window=60)], T0 + 6), Ticket)
    states = limits.states(T0 + 6)
    assert "one more" in states and len(states) == 16  # the oldest gave way
