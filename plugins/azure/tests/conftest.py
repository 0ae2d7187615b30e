"""Test helpers: make ``azure_wire`` importable under ``--import-mode=importlib``,
and a ``server`` fixture that does not wait for the fake server to stop."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmkernel_http.testing.fake_server import FakeServer

_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    yield fake
    threading.Thread(target=fake.close, daemon=True).start()
