"""``abatch``: many chat requests through one kernel, concurrently, results as they
complete, under an optional per-run budget.

Every call goes through the kernel's async API, so rate limits, fallbacks, the cache,
budgets and the ledger apply as for any call; each carries
``metadata={"batch": <run id>, "custom_id": ...}`` so the ledger rows of a run can be
told apart.

The per-run budget is kept here: before a request starts, its worst case (the
highest ``RequestContext.worst_case_cost`` among its candidates) is reserved; when it
ends, the reservation is replaced by what it cost. A request whose worst case would
take spend plus reservations past the amount is not started, and the run stops taking
work. Only one attempt of a call is billed, so spend can never pass the amount.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from llmkernel.context import RequestContext
from llmkernel_batch.items import BadLine, BatchItem, call_arguments, item_from
from llmkernel_batch.results import BatchResult, response_data

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel

__all__ = ["RunBudget", "abatch", "new_run_id", "worst_case"]


def new_run_id() -> str:
    return "run_" + time.strftime("%Y%m%d%H%M%S") + "_" + secrets.token_hex(3)


@attrs.define(kw_only=True)
class RunBudget:
    """A run's limit: ``spent`` (settled) plus ``reserved`` (in flight, at worst
    case) never passes ``limit``. ``stopped`` once a request was turned away."""

    limit: Decimal
    spent: Decimal = Decimal(0)
    reserved: Decimal = Decimal(0)
    stopped: bool = False
    #: spend plus reservations when the run stopped taking work
    stopped_at: Decimal | None = None

    def admit(self, worst: Decimal) -> bool:
        if self.spent + self.reserved + worst > self.limit:
            if not self.stopped:
                self.stopped = True
                self.stopped_at = self.spent + self.reserved
            return False
        self.reserved += worst
        return True

    def settle(self, worst: Decimal, cost: Decimal | None) -> None:
        self.reserved -= worst
        self.spent += worst if cost is None else cost


def worst_case(kernel: Kernel, item: BatchItem) -> Decimal | None:
    """The most ``item`` can cost: the highest worst case among its candidates
    (``None`` when one of them is unpriced)."""
    request = kernel.build_request(**call_arguments(item))
    ctx = RequestContext.new(kernel, "chat", request)
    worst: Decimal | None = None
    for candidate in kernel.models.resolve(request.model):
        cost = ctx.worst_case_cost(candidate)
        if cost is None:
            return None
        worst = cost if worst is None else max(worst, cost)
    return worst


async def abatch(
    kernel: Kernel,
    requests: Iterable[BatchItem | BadLine | Mapping[str, Any]],
    *,
    concurrency: int = 8,
    budget: Decimal | str | float | RunBudget | None = None,
    run_id: str | None = None,
    timeout: float | None = None,
) -> AsyncIterator[BatchResult]:
    """Send ``requests`` (dicts in OpenAI's chat or ``/v1/batches`` line shape, with
    a ``custom_id``, or :class:`BatchItem`) through ``kernel``, at most
    ``concurrency`` at once; yield a :class:`BatchResult` as each completes.

    A request that is not valid yields an ``"error"`` result (kind
    ``invalid_request``) and the rest go on. With ``budget``, a request that would
    take the run past the amount yields one ``"skipped"`` result (kind ``budget``)
    and no further request is started; one whose model is unpriced is skipped (kind
    ``unpriced``). Closing the iterator early (or cancelling) cancels the calls in
    flight; the kernel releases their reservations.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a positive integer, not {concurrency!r}")
    run = run_id or new_run_id()
    limit = _budget(budget)
    source = iter(requests)
    running: set[asyncio.Task[BatchResult]] = set()
    exhausted = False
    try:
        while True:
            while not exhausted and len(running) < concurrency:
                if limit is not None and limit.stopped:
                    exhausted = True
                    break
                try:
                    raw = next(source)
                except StopIteration:
                    exhausted = True
                    break
                if isinstance(raw, BadLine):
                    continue
                started = _start(kernel, raw, run, timeout, limit)
                if isinstance(started, BatchResult):
                    yield started
                    continue
                running.add(started)
            if not running:
                return
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                yield task.result()
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)


def _budget(value: Decimal | str | float | RunBudget | None) -> RunBudget | None:
    if value is None or isinstance(value, RunBudget):
        return value
    try:
        amount = Decimal(str(value))
    except ArithmeticError:
        raise ValueError(f"budget must be an amount such as '5.00', not {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"budget must be a positive amount, not {value!r}")
    return RunBudget(limit=amount)


def _start(
    kernel: Kernel,
    raw: BatchItem | Mapping[str, Any],
    run: str,
    timeout: float | None,
    limit: RunBudget | None,
) -> asyncio.Task[BatchResult] | BatchResult:
    from llmkernel.errors import LLMKernelError

    custom_id = str(raw.get("custom_id", "?")) if isinstance(raw, Mapping) else raw.custom_id
    try:
        item = item_from(raw)
    except ValueError as exc:
        return BatchResult(
            custom_id=custom_id,
            status="error",
            error_kind="invalid_request",
            error_message=str(exc),
        )
    worst = Decimal(0)
    if limit is not None:
        try:
            estimate = worst_case(kernel, item)
        except LLMKernelError as exc:
            return BatchResult.failed(item.custom_id, exc, line=item.line)
        if estimate is None:
            return BatchResult(
                custom_id=item.custom_id,
                status="skipped",
                error_kind="unpriced",
                error_message=f"{item.model or kernel.models.default_model} is unpriced; a budget "
                "needs a price for every model (add [prices] to the config)",
                line=item.line,
            )
        if not limit.admit(estimate):
            return BatchResult(
                custom_id=item.custom_id,
                status="skipped",
                error_kind="budget",
                error_message=f"the run's budget ${limit.limit} would be passed "
                f"(spent ${limit.spent}, reserved ${limit.reserved}, this one up to ${estimate})",
                line=item.line,
            )
        worst = estimate
    return asyncio.ensure_future(_one(kernel, item, run, timeout, limit, worst))


async def _one(
    kernel: Kernel,
    item: BatchItem,
    run: str,
    timeout: float | None,
    limit: RunBudget | None,
    worst: Decimal,
) -> BatchResult:
    from llmkernel.errors import LLMKernelError, RefusedError

    cost: Decimal | None = None
    try:
        kwargs = call_arguments(item, {"batch": run, "custom_id": item.custom_id})
        if timeout is not None:
            kwargs["timeout"] = timeout
        response = await kernel.achat(**kwargs)
        cost = response.cost if response.cost is not None else Decimal(0)
        return BatchResult(
            custom_id=item.custom_id,
            status="ok",
            response=response_data(response),
            cost=response.cost,
            tokens=response.usage.total_tokens,
            line=item.line,
        )
    except RefusedError as exc:
        cost = Decimal(0)
        if getattr(exc, "kind", "") == "budget":
            return attrs.evolve(
                BatchResult.failed(item.custom_id, exc, line=item.line), status="skipped"
            )
        return BatchResult.failed(item.custom_id, exc, line=item.line)
    except LLMKernelError as exc:
        cost = Decimal(0)
        result = BatchResult.failed(item.custom_id, exc, line=item.line)
        if result.error_kind == "budget":  # every candidate refused by a budget
            return attrs.evolve(result, status="skipped")
        return result
    finally:
        if limit is not None:
            limit.settle(worst, cost)  # cancelled: counted at its worst case
