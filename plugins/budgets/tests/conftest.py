from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from llmkernel_redis.testing import redis_server

__all__ = ["logs", "redis_server"]


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """structlog's ``capture_logs`` for the test, leaving structlog unconfigured
    after if it was (``capture_logs`` leaves it configured, and the kernel's events
    then go to structlog instead of the standard library logger other tests read)."""
    was = structlog.is_configured()
    try:
        with structlog.testing.capture_logs() as found:
            yield found
    finally:
        if not was:
            structlog.reset_defaults()
