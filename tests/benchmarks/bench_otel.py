"""What llmkernel-otel costs a call: installed with no SDK configured (opentelemetry
not imported, and imported without providers), and with the SDK and a batch span
processor, against the same kernel without the plugin, interleaved in one run.

Two stacks: the kernel with the offline mock provider (no network: the plugin's cost
stands out of nothing but the kernel's), and the minimal HTTP stack (the OpenAI
provider against the fake upstream). Each figure is this process's CPU time per
call (``time.thread_time``), in batches of calls interleaved across the kernels: on
a machine shared with other work, wall time would measure the neighbours.

    python tests/benchmarks/bench_otel.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from common import MODEL, median, paired, pct, upstream

TARGET_US = 5.0


def kernel(providers: dict[str, Any], *, otel: Any = None) -> Any:
    import llmkernel_mock.plugin
    import llmkernel_openai.plugin
    from llmkernel import Kernel

    plugins: list[object] = [llmkernel_mock.plugin, llmkernel_openai.plugin]
    if otel is not None:
        plugins.append(otel)
    return Kernel.from_config({"providers": providers}, plugins=plugins, entry_points=False)


class _Discard:
    """A span exporter that drops what it is given (the batch processor's work is
    measured, not an exporter's network)."""

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


async def interleave_cpu(
    calls: dict[str, Callable[[], Any]], rounds: int, warmup: int, per: int = 100
) -> dict[str, list[float]]:
    """Batches of ``per`` calls of each callable in turn; CPU seconds per call."""
    for call in calls.values():
        for _ in range(warmup):
            await call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    order = list(calls.items())
    shuffle = random.Random(22).shuffle
    clock = time.thread_time_ns
    for _ in range(max(1, rounds // per)):
        shuffle(order)
        for name, call in order:
            started = clock()
            for _ in range(per):
                await call()
            times[name].append((clock() - started) / per / 1e9)
    return times


def _summary(times: dict[str, list[float]], base: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, samples in times.items():
        diff = paired(samples, times[base])
        out[name] = {
            "median_us": median(samples) * 1e6,
            # the fastest batch of each: what the work costs when nothing interferes
            "added_min_us": (min(samples) - min(times[base])) * 1e6,
            "added_median_us": median(diff) * 1e6,
            "added_p90_us": pct(diff, 0.9) * 1e6,
        }
    return out


async def measure(
    providers: dict[str, Any], model: str, rounds: int, *, imported: bool
) -> dict[str, Any]:
    """Without the plugin against it with no SDK (``imported``: after the
    application imported opentelemetry, configuring nothing), then with the SDK."""
    import llmkernel_otel.plugin as entry

    without = kernel(providers)
    # the entry point's hooks, as an installed plugin registers them, with no SDK
    bare = kernel(providers, otel=entry)
    messages = [{"role": "user", "content": "Say hello."}]
    no_sdk = (
        "plugin, no SDK (API imported, no providers)"
        if imported
        else "plugin, no SDK (opentelemetry not imported)"
    )
    calls = {
        "without the plugin": lambda: without.achat(model, messages),
        no_sdk: lambda: bare.achat(model, messages),
    }
    times = await interleave_cpu(calls, rounds, warmup=200)
    if not imported:
        assert not [m for m in sys.modules if m.startswith("opentelemetry")]
        for k in (without, bare):
            await k.aclose()
        return _summary(times, "without the plugin")
    result = _summary(times, "without the plugin")

    # an SDK with a batch span processor (and a metric reader), the plugin's own
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from llmkernel_otel import OtelPlugin

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(_Discard()))  # type: ignore[arg-type]
    traced = kernel(providers, otel=OtelPlugin(tracer_provider=tracer_provider, name="bench"))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    both = kernel(
        providers,
        otel=OtelPlugin(
            tracer_provider=tracer_provider, meter_provider=meter_provider, name="bench"
        ),
    )
    calls = {
        "without the plugin": lambda: without.achat(model, messages),
        "SDK: spans (batch span processor)": lambda: traced.achat(model, messages),
        "SDK: spans and metrics": lambda: both.achat(model, messages),
    }
    times = await interleave_cpu(calls, rounds, warmup=200)
    result.update(_summary(times, "without the plugin"))
    for k in (without, bare, traced, both):
        await k.aclose()
    tracer_provider.shutdown()
    meter_provider.shutdown()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds = 2000 if args.quick else 10000
    out: dict[str, Any] = {"mock": {}, "http": {}}
    mock = ({"mock": {"type": "mock"}}, "mock/echo", rounds)
    with upstream() as base:
        providers = {"bench": {"type": "openai", "base_url": base, "api_key_env": "BENCH_KEY"}}
        http = (providers, f"bench/{MODEL}", rounds // 4)
        for imported in (False, True):  # opentelemetry not imported yet, then imported
            if imported:
                import opentelemetry.metrics
                import opentelemetry.trace  # noqa: F401  (the application's, no providers)
            for name, (stack, model, n) in (("mock", mock), ("http", http)):
                out[name].update(asyncio.run(measure(stack, model, n, imported=imported)))
    no_sdk = out["mock"]["plugin, no SDK (opentelemetry not imported)"]["added_min_us"]
    out["target_us"] = TARGET_US
    out["met"] = no_sdk < TARGET_US
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
