"""Test helpers: make this directory's helper module (``ollama_wire``) importable
under pytest's ``--import-mode=importlib`` (which does not put test directories on
``sys.path``), and a ``server`` fixture that does not wait for the fake server's
0.5 s shutdown poll."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmkernel_http.testing.fake_server import FakeServer

_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from ollama_wire import close_later  # noqa: E402


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    yield fake
    close_later(fake)
