"""llmkernel hooks of the redis plugin. Cheap to import: without ``[redis]`` in the
config nothing else of this package, and nothing of redis-py, is imported."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from llmkernel import hookimpl

if TYPE_CHECKING:
    from llmkernel.config import Config
    from llmkernel.kernel import Kernel

NAME = "redis"


@hookimpl(tryfirst=True)
def configure(kernel: Kernel, config: Config) -> None:
    if not config.redis:
        return
    from llmkernel_redis.shared import shared_for

    shared_for(kernel)  # [redis] checked now, whoever asks first; no I/O


@hookimpl
def collect_stats(kernel: Kernel) -> Mapping[str, Any] | None:
    if not kernel.config.redis:
        return None
    from llmkernel_redis.shared import shared_for

    shared = shared_for(kernel)
    return {"redis": shared.stats()} if shared is not None else None
