"""The ``least-loaded`` routing strategy for llmkernel.

Least-loaded: the candidate with the fewest requests in flight first (counted by
the routing gate of llmkernel-routing); ties take turns, so idle candidates share
the load instead of the first one taking it all.

Names load on first use (PEP 562): importing the package, as the plugin
entry point does, stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "llmkernel_strategy_least_loaded.strategy": [
            "LeastLoaded",
            "LeastLoadedSettings",
            "NAME",
            "make",
        ],
    },
)

if TYPE_CHECKING:
    from llmkernel_strategy_least_loaded.strategy import (
        NAME,
        LeastLoaded,
        LeastLoadedSettings,
        make,
    )


__all__ = [
    "NAME",
    "LeastLoaded",
    "LeastLoadedSettings",
    "make",
]
