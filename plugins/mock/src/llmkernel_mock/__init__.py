"""Simulated LLM provider for llmkernel: offline, deterministic, with configurable
latency and failures.

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "llmkernel_mock.provider": ["MockProvider", "MockReply"],
        "llmkernel_mock.settings": ["MockSettings"],
    },
)

if TYPE_CHECKING:
    from llmkernel_mock.provider import MockProvider, MockReply
    from llmkernel_mock.settings import MockSettings


__all__ = [
    "MockProvider",
    "MockReply",
    "MockSettings",
]
