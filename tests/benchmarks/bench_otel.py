"""What llmkernel-otel costs a call, against the same kernel without it, interleaved
in one run: installed with no SDK configured (opentelemetry not imported; then
imported by the application, which configures nothing), and with the SDK and a
batch span processor.

Without an SDK the plugin tells the kernel it is idle (``llmkernel_idle``), so the
kernel calls none of its hooks and builds no outcome for them; the reference row,
a plugin whose ``on_request_end`` does nothing, is what a listener costs, and the
control row, a second kernel without the plugin, what noise alone shows.

The provider is the offline mock (no network: what is measured is the kernel's own
work). Two stacks: the kernel with the mock only (the plugin is then the only one
listening to the end hooks, so the kernel builds their outcomes for it), and the
full default stack (every first-party plugin, the cache missed, the ledger and a
budget, prices), where other plugins listen anyway. Each figure is this process's
CPU time per call (``time.thread_time``), from batches of calls interleaved across
the kernels; "added" compares the fastest batches (what the work costs when
nothing interferes: this machine is shared) and the medians of paired batches.

    python tests/benchmarks/bench_otel.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import full_config, median, paired

TARGET_US = 5.0
NOT_IMPORTED = "plugin, no SDK (opentelemetry not imported)"
IMPORTED = "plugin, no SDK (API imported, no providers)"
WITHOUT = "without the plugin"
EMPTY = "reference: a plugin with an empty on_request_end"
#: a second kernel without the plugin, identical to the baseline: what the machine's
#: noise and the two kernels' places in memory alone "add"
CONTROL = "control: a second kernel without the plugin"


class EmptyEndHook:
    """What any plugin that watches calls costs the kernel: it builds the call's
    outcome for the hook and calls it."""

    __llmkernel_name__ = "empty-end-hook"

    def __init__(self) -> None:
        from llmkernel import hookimpl

        @hookimpl
        def on_request_end(ctx: Any, outcome: Any) -> None:
            return None

        self.on_request_end = on_request_end


def minimal(otel: Any = None) -> Any:
    import llmkernel_mock.plugin
    from llmkernel import Kernel

    plugins: list[object] = [llmkernel_mock.plugin] + ([otel] if otel is not None else [])
    return Kernel.from_config(
        {"providers": {"mock": {"type": "mock"}}}, plugins=plugins, entry_points=False
    )


def full(tmp: Path, *, entry_point: bool, otel: Any = None) -> Any:
    """The full default stack on the mock; ``entry_point``: the otel plugin enabled."""
    from llmkernel import Kernel

    config = full_config("http://127.0.0.1:9/v1", tmp)
    config["providers"] = {"mock": {"type": "mock"}}
    config["models"] = {"fast": [{"target": "mock/echo", "weight": 1, "tier": "gold"}]}
    config["prices"] = {"mock/echo": {"input": "0.15", "output": "0.60"}}
    if not entry_point:
        config["plugins"] = {"disabled": ["otel"]}
    return Kernel.from_config(config, plugins=[otel] if otel is not None else [])


class _Discard:
    """A span exporter that drops what it is given: the batch processor's work is
    measured, not an exporter's network."""

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


async def interleave_cpu(
    calls: dict[str, Callable[[], Any]], batches: int, per: int = 100
) -> dict[str, list[float]]:
    """``batches`` batches of ``per`` calls of each callable, in a shuffled turn;
    CPU seconds per call of each batch."""
    for call in calls.values():
        for _ in range(per * 2):
            await call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    order = list(calls.items())
    shuffle = random.Random(22).shuffle
    clock = time.thread_time_ns
    for _ in range(batches):
        shuffle(order)
        for name, call in order:
            started = clock()
            for _ in range(per):
                await call()
            times[name].append((clock() - started) / per / 1e9)
    return times


def summary(times: dict[str, list[float]]) -> dict[str, Any]:
    base = times[WITHOUT]
    return {
        name: {
            "median_us": median(samples) * 1e6,
            "fastest_us": min(samples) * 1e6,
            "added_fastest_us": (min(samples) - min(base)) * 1e6,
            "added_median_us": median(paired(samples, base)) * 1e6,
        }
        for name, samples in times.items()
    }


def caller(kernel: Any, model: str) -> Callable[[], Any]:
    counter = itertools.count()

    def call() -> Any:  # a new text every call: a cache always misses
        return kernel.achat(model, [{"role": "user", "content": f"Say hello {next(counter)}."}])

    return call


async def no_sdk(tmp: Path, batches: int, label: str) -> dict[str, Any]:
    import llmkernel_otel.plugin as entry  # the entry point's hooks, as installed

    out: dict[str, Any] = {}
    kernels = [minimal(), minimal(entry), minimal(EmptyEndHook()), minimal()]
    times = await interleave_cpu(
        {
            WITHOUT: caller(kernels[0], "mock/echo"),
            label: caller(kernels[1], "mock/echo"),
            EMPTY: caller(kernels[2], "mock/echo"),
            CONTROL: caller(kernels[3], "mock/echo"),
        },
        batches,
    )
    out["minimal"] = summary(times)
    stack = [
        full(tmp / f"{label[:5]}-a", entry_point=False),
        full(tmp / f"{label[:5]}-b", entry_point=True),
    ]
    kernels += stack
    times = await interleave_cpu(
        {WITHOUT: caller(stack[0], "fast"), label: caller(stack[1], "fast")}, batches
    )
    out["full"] = summary(times)
    for kernel in kernels:
        await kernel.aclose()
    return out


async def with_sdk(batches: int) -> dict[str, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from llmkernel_otel import OtelPlugin

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(_Discard()))  # type: ignore[arg-type]
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    kernels = [
        minimal(),
        minimal(OtelPlugin(tracer_provider=tracer_provider, name="bench")),
        minimal(
            OtelPlugin(tracer_provider=tracer_provider, meter_provider=meter_provider, name="bench")
        ),
    ]
    times = await interleave_cpu(
        {
            WITHOUT: caller(kernels[0], "mock/echo"),
            "SDK: spans (batch span processor)": caller(kernels[1], "mock/echo"),
            "SDK: spans and metrics": caller(kernels[2], "mock/echo"),
        },
        batches,
    )
    for kernel in kernels:
        await kernel.aclose()
    tracer_provider.shutdown()
    meter_provider.shutdown()
    return summary(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    batches = 40 if args.quick else 150
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out["not_imported"] = asyncio.run(no_sdk(Path(tmp), batches, NOT_IMPORTED))
        assert not [m for m in sys.modules if m.startswith("opentelemetry")], "imported"
        import opentelemetry.metrics
        import opentelemetry.trace  # noqa: F401  (the application's; it sets no provider)

        out["imported"] = asyncio.run(no_sdk(Path(tmp), batches, IMPORTED))
        out["sdk"] = asyncio.run(with_sdk(batches))
    rows = out["not_imported"]["minimal"]
    added = rows[NOT_IMPORTED]["added_fastest_us"]
    out["target_us"] = TARGET_US
    out["met"] = added < TARGET_US
    # the plugin's own part: over what any end-hook listener costs the kernel
    out["plugin_over_empty_hook_us"] = added - rows[EMPTY]["added_fastest_us"]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
