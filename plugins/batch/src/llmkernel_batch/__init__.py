"""Batch work for llmkernel: many chat requests from Python or a JSONL file,
concurrently, resumable, under a budget; and the providers' batch APIs.

    from llmkernel_batch import abatch

    async for result in abatch(kernel, requests, concurrency=50):
        print(result.custom_id, result.status)

The names below load on first use, so the entry point (``llmkernel_batch.plugin``)
stays cheap to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "llmkernel_batch.items": ["BadLine", "BatchItem", "read_items"],
        "llmkernel_batch.results": ["BatchResult"],
        "llmkernel_batch.runner": ["RunBudget", "abatch"],
    },
)

if TYPE_CHECKING:
    from llmkernel_batch.items import BadLine, BatchItem, read_items
    from llmkernel_batch.results import BatchResult
    from llmkernel_batch.runner import RunBudget, abatch

__all__ = ["BadLine", "BatchItem", "BatchResult", "RunBudget", "abatch", "read_items"]
