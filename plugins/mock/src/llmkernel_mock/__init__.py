"""Simulated LLM provider for llmkernel: offline, deterministic, with configurable
latency and failures."""

from __future__ import annotations

from llmkernel_mock.provider import MockProvider, MockReply
from llmkernel_mock.settings import MockSettings

__all__ = ["MockProvider", "MockReply", "MockSettings"]
