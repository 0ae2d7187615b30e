from __future__ import annotations

import random
import sys

import pytest

from llmkernel_routing.sketch import Sketch


def _exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


@pytest.mark.parametrize(
    "draw",
    [
        lambda r: r.lognormvariate(-3.0, 1.0),  # latencies around 50 ms, long tail
        lambda r: r.expovariate(10.0),
        lambda r: r.uniform(0.001, 2.0),
        lambda r: r.paretovariate(1.5) / 100,
    ],
    ids=["lognormal", "exponential", "uniform", "pareto"],
)
def test_percentiles_within_one_percent_on_100000_samples(draw):
    rng = random.Random(7)
    values = [draw(rng) for _ in range(100_000)]
    sketch = Sketch()
    sketch.extend(values)
    assert sketch.count == 100_000
    for q in (0.01, 0.1, 0.5, 0.9, 0.95, 0.99, 0.999):
        exact = _exact(values, q)
        got = sketch.quantile(q)
        assert got is not None
        assert abs(got - exact) <= 0.01 * exact, (q, got, exact)
    assert sketch.quantiles((0.5, 0.95, 0.99)) == [
        sketch.quantile(0.5),
        sketch.quantile(0.95),
        sketch.quantile(0.99),
    ]
    assert sketch.quantile(1.0) == max(values)
    assert sketch.quantile(0.0) == min(values)


def test_memory_is_bounded_whatever_the_spread():
    rng = random.Random(1)
    values = [10 ** rng.uniform(-8, 6) for _ in range(100_000)]  # fourteen decades
    sketch = Sketch(max_buckets=256)
    sketch.extend(values)
    assert sketch.buckets <= 257
    assert sys.getsizeof(sketch._buckets) < 64 * 1024
    # high quantiles keep their precision: the lowest buckets are the ones merged
    values.sort()
    p99 = sketch.quantile(0.99)
    assert p99 is not None
    exact = values[int(0.99 * (len(values) - 1))]
    assert abs(p99 - exact) <= 0.01 * exact


def test_default_buckets_bounded_on_a_million_latencies():
    rng = random.Random(3)
    sketch = Sketch()
    for _ in range(200_000):
        sketch.add(rng.lognormvariate(-2.0, 2.0))
    assert sketch.buckets <= sketch.max_buckets + 1


def test_empty_zero_and_merge():
    sketch = Sketch()
    assert sketch.quantile(0.5) is None
    assert sketch.summary()["p50"] is None
    sketch.extend([0.0, 0.0, 0.0, 1.0])
    assert sketch.quantile(0.5) == 0.0
    assert sketch.quantile(1.0) == 1.0
    other = Sketch()
    other.extend([2.0] * 10)
    sketch.merge(other)
    assert sketch.count == 14
    assert sketch.quantile(0.9) == pytest.approx(2.0, rel=0.01)
    with pytest.raises(ValueError):
        sketch.merge(Sketch(relative_accuracy=0.02))
    with pytest.raises(ValueError):
        sketch.quantile(1.5)


def test_summary_in_milliseconds():
    sketch = Sketch()
    sketch.extend([0.1] * 99 + [1.0])
    summary = sketch.summary()
    assert summary["count"] == 100
    assert summary["p50"] == pytest.approx(100.0, rel=0.01)
    assert summary["max"] == 1000.0
    assert summary["mean"] == pytest.approx(109.0, rel=0.001)
