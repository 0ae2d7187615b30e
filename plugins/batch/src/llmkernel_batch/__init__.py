"""Batch work for llmkernel: many chat requests from Python or a JSONL file,
concurrently, resumable, under a budget; and the providers' batch APIs.

    from llmkernel_batch import abatch

    async for result in abatch(kernel, requests, concurrency=50):
        print(result.custom_id, result.status)
"""

from __future__ import annotations

from llmkernel_batch.items import BadLine, BatchItem, read_items
from llmkernel_batch.results import BatchResult
from llmkernel_batch.runner import RunBudget, abatch

__all__ = ["BadLine", "BatchItem", "BatchResult", "RunBudget", "abatch", "read_items"]
