from __future__ import annotations

import math

import pytest

from llmkernel_routing.breaker import Breaker, BreakerSettings


def fail(breaker: Breaker, now: float, kind: str = "server", retry_after: float | None = None):
    assert breaker.acquire(now) is True
    breaker.release(now, breaker.failure_verdict(kind), kind=kind, retry_after=retry_after)


def test_opens_after_n_consecutive_failures_and_a_success_resets_the_count():
    breaker = Breaker(settings=BreakerSettings(failures=3, cooldown=10))
    fail(breaker, 0.0)
    fail(breaker, 0.1)
    assert breaker.acquire(0.2) is True
    breaker.release(0.2, "success")
    assert breaker.consecutive == 0
    fail(breaker, 0.3)
    fail(breaker, 0.4)
    assert breaker.current(0.4) == "closed"
    fail(breaker, 0.5)
    assert breaker.current(0.5) == "open"
    assert "3 consecutive failures" in breaker.reason
    assert breaker.acquire(1.0) is False
    assert not breaker.available(1.0)
    assert breaker.retry_after(1.0) == pytest.approx(9.5)


def test_half_open_lets_exactly_one_probe_through_and_closes_on_success():
    breaker = Breaker(settings=BreakerSettings(failures=1, cooldown=5))
    fail(breaker, 0.0)
    assert breaker.acquire(4.9) is False
    assert breaker.current(5.0) == "half_open"
    assert breaker.available(5.0)
    assert breaker.acquire(5.0) == "probe"
    # everyone else skips it while the probe is out
    assert breaker.acquire(5.1) is False
    assert not breaker.available(5.1)
    breaker.release(6.0, "success", probe=True)
    assert breaker.current(6.0) == "closed"
    assert breaker.acquire(6.0) is True


def test_failed_probe_reopens_with_a_longer_cooldown_capped():
    breaker = Breaker(settings=BreakerSettings(failures=1, cooldown=5, backoff=2, max_cooldown=12))
    fail(breaker, 0.0)
    assert breaker.acquire(5.0) == "probe"
    breaker.release(5.0, "failure", probe=True, kind="server")
    assert breaker.current(5.0) == "open"
    assert breaker.cooldown == 10
    assert "probe failed" in breaker.reason
    assert breaker.acquire(14.9) is False
    assert breaker.acquire(15.0) == "probe"
    breaker.release(15.0, "failure", probe=True, kind="timeout")
    assert breaker.cooldown == 12  # capped
    assert breaker.opens == 3


def test_probe_without_verdict_frees_the_probe_slot():
    breaker = Breaker(settings=BreakerSettings(failures=1, cooldown=1))
    fail(breaker, 0.0)
    assert breaker.acquire(1.0) == "probe"
    breaker.release(1.0, "none", probe=True)  # cancelled, or refused by a later gate
    assert breaker.current(1.0) == "half_open"
    assert breaker.acquire(1.1) == "probe"


def test_retry_after_lengthens_the_cooldown_up_to_the_cap():
    breaker = Breaker(settings=BreakerSettings(failures=1, cooldown=2, max_cooldown=60))
    fail(breaker, 0.0, kind="rate_limit", retry_after=30)
    assert breaker.cooldown == 30
    assert breaker.acquire(29.0) is False
    assert breaker.acquire(30.0) == "probe"
    capped = Breaker(settings=BreakerSettings(failures=1, cooldown=2, max_cooldown=60))
    fail(capped, 0.0, kind="rate_limit", retry_after=3600)
    assert capped.cooldown == 60


def test_error_rate_over_the_window_opens_it():
    settings = BreakerSettings(failures=100, error_rate=0.5, window=10, min_requests=10)
    breaker = Breaker(settings=settings)
    now = 0.0
    for i in range(9):  # alternate: never 100 in a row, but 50 %
        now += 0.1
        if i % 2:
            fail(breaker, now)
        else:
            assert breaker.acquire(now) is True
            breaker.release(now, "success")
    assert breaker.current(now) == "closed"  # 9 < min_requests
    fail(breaker, now + 0.1)
    assert breaker.current(now + 0.1) == "open"
    assert "error rate 5/10" in breaker.reason


def test_old_failures_leave_the_window():
    settings = BreakerSettings(failures=100, error_rate=0.5, window=10, min_requests=4)
    breaker = Breaker(settings=settings)
    fail(breaker, 0.0)
    fail(breaker, 0.1)
    fail(breaker, 0.2)
    for t in (30.0, 30.1, 30.2):  # long after: the old failures no longer count
        assert breaker.acquire(t) is True
        breaker.release(t, "success")
    fail(breaker, 30.3)
    assert breaker.current(30.3) == "closed"


def test_authentication_failure_keeps_it_open_until_the_config_changes():
    breaker = Breaker(settings=BreakerSettings(failures=5, cooldown=1))
    fail(breaker, 0.0, kind="authentication")
    assert breaker.current(1e9) == "open"
    assert breaker.acquire(1e9) is False
    assert breaker.retry_after(1e9) is None
    assert math.isinf(breaker.until)
    assert "configuration" in breaker.reason


def test_request_errors_mean_the_deployment_answered():
    breaker = Breaker(settings=BreakerSettings(failures=2))
    for kind in ("invalid_request", "content_filter", "context_window"):
        assert breaker.failure_verdict(kind) == "success"
    fail(breaker, 0.0)
    fail(breaker, 0.1, kind="invalid_request")  # resets the count
    fail(breaker, 0.2)
    assert breaker.current(0.2) == "closed"


def test_an_attempt_started_before_opening_changes_nothing_when_it_ends():
    breaker = Breaker(settings=BreakerSettings(failures=1, cooldown=10))
    assert breaker.acquire(0.0) is True  # a slow one in flight
    fail(breaker, 0.1)
    breaker.release(0.5, "success")  # the slow one ends well: still open
    assert breaker.current(0.5) == "open"


def test_settings_are_checked():
    with pytest.raises(ValueError):
        BreakerSettings(failures=0)
    with pytest.raises(ValueError):
        BreakerSettings(error_rate=0)
    with pytest.raises(ValueError):
        BreakerSettings(backoff=0.5)


def test_the_reason_keeps_the_last_upstream_error():
    breaker = Breaker(settings=BreakerSettings(failures=2, cooldown=10))
    for now, message in ((0.0, "first"), (0.1, "upstream exploded (status 500)")):
        assert breaker.acquire(now) is True
        breaker.release(now, "failure", kind="server", error=f"ServerError: {message}")
    assert breaker.reason == (
        "2 consecutive failures; last: ServerError: upstream exploded (status 500)"
    )
    assert breaker.acquire(10.1) == "probe"
    breaker.release(10.1, "failure", probe=True, kind="network", error="NetworkError: refused")
    assert breaker.reason == "half-open probe failed (network); last: NetworkError: refused"
    breaker.release(20.0, "failure", kind="server", error="x" * 1000)  # one from before
    assert len(breaker.last_error) < 310  # bounded, whatever the upstream said
    assert breaker.acquire(30.2) == "probe"  # the cooldown doubled: 20 s
    breaker.release(30.2, "success", probe=True)
    assert breaker.reason == "" and breaker.last_error == ""
