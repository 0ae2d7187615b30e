"""Provider batches from submission to results: the adapters do the wire work; this
module records each batch in the store, prices its answers at the provider's batch
rates and writes them to the ledger (one row per answer, idempotent by
``<batch id>:<custom_id>``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from llmkernel_batch.items import BatchItem
from llmkernel_batch.remote.base import FINAL, Parsed, RemoteError, adapter_for
from llmkernel_batch.results import BatchResult
from llmkernel_batch.store import BatchJob, JobStore, store_path

if TYPE_CHECKING:
    import httpx

    from llmkernel.kernel import Kernel
    from llmkernel.routing import Candidate

__all__ = ["ProviderBatches", "batch_price"]


def batch_price(kernel: Kernel, candidate: Candidate) -> tuple[Any, bool]:
    """The candidate's price at batch rates, and whether a batch discount was known
    (``price.batch()`` of llmkernel-prices); the standard price when it was not."""
    price = kernel.models.price(candidate)
    batch = getattr(price, "batch", None)
    if callable(batch):
        try:
            return batch(), True
        except ValueError:
            pass
    return price, False


class ProviderBatches:
    """Submit, follow, collect and cancel provider batches for one kernel."""

    def __init__(
        self,
        kernel: Kernel,
        *,
        store: JobStore | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.kernel = kernel
        self.store = store or JobStore(store_path(kernel))
        self.client = client

    def _candidate(self, provider: str, model: str) -> Candidate:
        return self.kernel.models.resolve(f"{provider}/{model}")[0]

    def submit(self, items: Sequence[BatchItem], *, model: str | None = None) -> BatchJob:
        """Send ``items`` as one provider batch; every item must resolve to the same
        provider instance and model."""
        from llmkernel.errors import ConfigError

        if not items:
            raise ConfigError("nothing to submit: the input has no valid request")
        chosen: set[tuple[str, str, str]] = set()
        for item in items:
            name = item.model or model or self.kernel.models.default_model
            candidate = self.kernel.models.resolve(name)[0]
            chosen.add((candidate.provider, candidate.provider_type, candidate.model))
        if len(chosen) != 1:
            listed = ", ".join(sorted(f"{p}/{m}" for p, _, m in chosen))
            raise ConfigError(
                f"a provider batch goes to one provider and model; this input names {listed}"
            )
        provider, ptype, model_id = chosen.pop()

        async def go() -> tuple[str, str, Any]:
            remote = adapter_for(self.kernel, provider, client=self.client)
            try:
                result: tuple[str, str, Any] = await remote.submit(items, model_id)
                return result
            finally:
                await remote.aclose()

        remote_id, status, info = asyncio.run(go())
        return self.store.add(
            id=remote_id,
            provider=provider,
            provider_type=ptype,
            model=model_id,
            status=status,
            custom_ids=[i.custom_id for i in items],
            info=info,
        )

    def status(self, batch_id: str) -> BatchJob:
        job = self.store.get(batch_id)
        status, info = asyncio.run(self._call(job, "poll"))
        return self.store.update(job.id, status=status, info=info)

    def cancel(self, batch_id: str) -> BatchJob:
        job = self.store.get(batch_id)
        status, info = asyncio.run(self._call(job, "cancel"))
        return self.store.update(job.id, status=status, info=info)

    def results(self, batch_id: str) -> tuple[BatchJob, list[BatchResult]]:
        """The answers of a finished batch (``RemoteError`` while it runs), priced
        at batch rates and recorded in the ledger; a ``custom_id`` sent but not
        answered comes back as an error of kind ``missing``."""
        job = self.store.get(batch_id)

        async def go() -> tuple[str, Any, list[Parsed]]:
            remote = adapter_for(self.kernel, job.provider, client=self.client)
            try:
                status, info = await remote.poll(job)
                if status not in FINAL:
                    return status, info, []
                return status, info, await remote.results(job, info)
            finally:
                await remote.aclose()

        status, info, parsed = asyncio.run(go())
        job = self.store.update(job.id, status=status, info=info)
        if status not in FINAL:
            raise RemoteError(f"batch {job.id} is still {status}; try again later")
        results = self._results(job, parsed)
        self._record(job, parsed)
        return self.store.update(job.id, collected=True), results

    async def _call(self, job: BatchJob, method: str) -> Any:
        remote = adapter_for(self.kernel, job.provider, client=self.client)
        try:
            return await getattr(remote, method)(job)
        finally:
            await remote.aclose()

    def _results(self, job: BatchJob, parsed: list[Parsed]) -> list[BatchResult]:
        candidate = self._candidate(job.provider, job.model)
        price, discounted = batch_price(self.kernel, candidate)
        by_id = {p.custom_id: p for p in parsed}
        out: list[BatchResult] = []
        for custom_id in job.custom_ids:
            answer = by_id.get(custom_id)
            if answer is None:
                out.append(
                    BatchResult(
                        custom_id=custom_id,
                        status="error",
                        error_kind="missing",
                        error_message=f"batch {job.id} ({job.status}) returned no answer for it",
                    )
                )
            elif not answer.ok:
                out.append(
                    BatchResult(
                        custom_id=custom_id,
                        status="error",
                        error_kind=answer.error_kind,
                        error_message=answer.error_message,
                    )
                )
            else:
                cost = None if price is None else price.cost(answer.usage)
                usage = answer.usage
                out.append(
                    BatchResult(
                        custom_id=custom_id,
                        status="ok",
                        cost=cost,
                        tokens=usage.total_tokens,
                        response={
                            "id": answer.id,
                            "provider": job.provider,
                            "model": answer.model or job.model,
                            "text": answer.text,
                            "tool_calls": [dict(c) for c in answer.tool_calls],
                            "finish_reason": answer.finish_reason,
                            "usage": usage.as_dict(total=True),
                            "cost": None if cost is None else format(cost, "f"),
                            "batch_price": discounted,
                            "batch": job.id,
                        },
                    )
                )
        return out

    def _record(self, job: BatchJob, parsed: list[Parsed]) -> None:
        """One ledger row per answer, when the ledger plugin is enabled; rows are
        keyed ``<batch id>:<custom_id>``, so collecting twice records once."""
        try:
            from llmkernel_ledger.plugin import ledger_for
            from llmkernel_ledger.store import LedgerRow
        except ImportError:
            return
        try:
            ledger = ledger_for(self.kernel)
        except Exception:
            return
        candidate = self._candidate(job.provider, job.model)
        price, _ = batch_price(self.kernel, candidate)
        now = time.time()
        rows = []
        for answer in parsed:
            if not answer.custom_id:
                continue
            cost: Decimal | None = (
                price.cost(answer.usage) if price is not None and answer.ok else None
            )
            usage = answer.usage
            rows.append(
                LedgerRow(
                    request_id=f"{job.id}:{answer.custom_id}",
                    ts=now,
                    kind="batch",
                    status="ok" if answer.ok else "error",
                    error_kind=None if answer.ok else answer.error_kind,
                    provider=job.provider,
                    provider_type=job.provider_type,
                    model=job.model,
                    input_tokens=usage.input_tokens,
                    cached_input_tokens=usage.cached_input_tokens,
                    cache_write_tokens=usage.cache_write_tokens,
                    output_tokens=usage.output_tokens,
                    reasoning_tokens=usage.reasoning_tokens,
                    cost=cost if answer.ok else None,
                    attempts=1,
                )
            )
        for row in rows:
            ledger.writer.offer(row)
        ledger.writer.flush()

    def close(self) -> None:
        self.store.close()

    def wait(
        self, batch_id: str, *, interval: float = 30.0, limit: float | None = None
    ) -> BatchJob:
        """Poll until the batch is final (or ``limit`` seconds pass)."""
        started = time.monotonic()
        while True:
            job = self.status(batch_id)
            if job.status in FINAL:
                return job
            if limit is not None and time.monotonic() - started >= limit:
                return job
            time.sleep(interval)
