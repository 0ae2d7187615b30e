"""Batch work for llmkernel: many chat requests from Python or a JSONL file,
concurrently, resumable, under a budget; and the providers' batch APIs.

    from llmkernel_batch import abatch

    async for result in abatch(kernel, requests, concurrency=50):
        print(result.custom_id, result.status)

The names below load on first use, so the entry point (``llmkernel_batch.plugin``)
stays cheap to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmkernel_batch.items import BadLine, BatchItem, read_items
    from llmkernel_batch.results import BatchResult
    from llmkernel_batch.runner import RunBudget, abatch

__all__ = ["BadLine", "BatchItem", "BatchResult", "RunBudget", "abatch", "read_items"]

_WHERE = {
    "BadLine": "items",
    "BatchItem": "items",
    "read_items": "items",
    "BatchResult": "results",
    "RunBudget": "runner",
    "abatch": "runner",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'llmkernel_batch' has no attribute {name!r}")
    return getattr(importlib.import_module(f"llmkernel_batch.{module}"), name)
