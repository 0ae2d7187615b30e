"""A bounded percentile sketch for latencies (the DDSketch idea, kept small).

Values fall into logarithmic buckets: bucket ``k`` holds the values in
``(gamma**(k-1), gamma**k]`` with ``gamma = (1 + a) / (1 - a)``, and a quantile is
answered with the middle of its bucket, so it is within a relative error ``a`` of
the true value at that rank, whatever the distribution. Memory is at most
``max_buckets`` counters: past that, the lowest buckets are merged (low quantiles
lose precision first; p50/p95/p99 of latencies keep theirs). Adding a value is one
logarithm and one dict update.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import attrs

#: Relative accuracy of the default sketch: 0.5 % of the value at the asked rank.
DEFAULT_ACCURACY = 0.005
#: Buckets kept at most: 2048 cover about nine decades (a microsecond to 20 minutes)
#: at 0.5 %.
DEFAULT_MAX_BUCKETS = 2048


@attrs.define(kw_only=True, eq=False)
class Sketch:
    """Quantiles of non-negative values (seconds, say) in bounded memory."""

    relative_accuracy: float = DEFAULT_ACCURACY
    max_buckets: int = DEFAULT_MAX_BUCKETS
    #: Values at or below this count as zero (their own bucket).
    min_value: float = 1e-9
    count: int = 0
    total: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    _zero: int = 0
    _buckets: dict[int, int] = attrs.field(factory=dict)
    _floor: int = -(2**62)  # lower keys were folded into this one
    _gamma: float = attrs.field(init=False)
    _log_gamma: float = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        if not 0.0 < self.relative_accuracy < 1.0:
            raise ValueError("relative_accuracy must be between 0 and 1")
        if self.max_buckets < 2:
            raise ValueError("max_buckets must be at least 2")
        self._gamma = (1.0 + self.relative_accuracy) / (1.0 - self.relative_accuracy)
        self._log_gamma = math.log(self._gamma)

    def add(self, value: float) -> None:
        """Record one value (negative values count as zero)."""
        self.count += 1
        self.total += value
        # comparisons, not min()/max(): the same results (NaN included) without two
        # calls on every attempt's hot path
        if value < self.min:  # noqa: PLR1730
            self.min = value
        if value > self.max:  # noqa: PLR1730
            self.max = value
        if value <= self.min_value:
            self._zero += 1
            return
        key = math.ceil(math.log(value) / self._log_gamma)
        floor = self._floor
        if key < floor:  # noqa: PLR1730
            key = floor
        buckets = self._buckets
        buckets[key] = buckets.get(key, 0) + 1
        if len(buckets) > self.max_buckets:
            self._collapse()

    def extend(self, values: Iterable[float]) -> None:
        for value in values:
            self.add(value)

    def merge(self, other: Sketch) -> None:
        """Add every value ``other`` recorded (same accuracy required)."""
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError("cannot merge sketches of different accuracy")
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self._zero += other._zero
        self._floor = max(self._floor, other._floor)
        for key, n in other._buckets.items():
            into = max(key, self._floor)
            self._buckets[into] = self._buckets.get(into, 0) + n
        if len(self._buckets) > self.max_buckets:
            self._collapse()

    def _collapse(self) -> None:
        """Fold the lowest buckets into the lowest one kept; values below it land
        there from now on."""
        keys = sorted(self._buckets)
        excess = len(keys) - self.max_buckets
        floor = keys[excess]
        for key in keys[:excess]:
            self._buckets[floor] += self._buckets.pop(key)
        self._floor = floor

    @property
    def buckets(self) -> int:
        """How many buckets are in use (memory is proportional to it)."""
        return len(self._buckets) + (1 if self._zero else 0)

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """The value at rank ``q`` (0..1, the lower of two middle ranks), or ``None``
        when empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError("q must be between 0 and 1")
        if not self.count:
            return None
        rank = int(q * (self.count - 1))
        if rank == self.count - 1:
            return self.max
        if rank == 0:
            return self.min
        seen = self._zero
        if rank < seen:
            return max(self.min, 0.0)
        for key in sorted(self._buckets):
            seen += self._buckets[key]
            if rank < seen:
                value = 2.0 * self._gamma**key / (self._gamma + 1.0)
                return min(max(value, self.min), self.max)
        return self.max  # pragma: no cover - counts always add up

    def quantiles(self, qs: Iterable[float]) -> list[float | None]:
        """Several quantiles in one walk over the buckets."""
        wanted = sorted((q, i) for i, q in enumerate(qs))
        out: list[float | None] = [None] * len(wanted)
        if not self.count:
            return out
        keys = sorted(self._buckets)
        seen, j = self._zero, 0
        for q, i in wanted:
            rank = int(q * (self.count - 1))
            if rank in (0, self.count - 1):
                out[i] = self.min if rank == 0 and self.count > 1 else self.max
                continue
            if rank < self._zero:
                out[i] = max(self.min, 0.0)
                continue
            while j < len(keys) and seen + self._buckets[keys[j]] <= rank:
                seen += self._buckets[keys[j]]
                j += 1
            if j >= len(keys):
                out[i] = self.max
                continue
            value = 2.0 * self._gamma ** keys[j] / (self._gamma + 1.0)
            out[i] = min(max(value, self.min), self.max)
        return out

    def summary(self, scale: float = 1000.0, digits: int = 2) -> dict[str, float | int | None]:
        """``count``, ``mean``, ``p50``, ``p95``, ``p99``, ``max`` as plain numbers,
        multiplied by ``scale`` (seconds to milliseconds by default)."""

        def fix(value: float | None) -> float | None:
            return None if value is None else round(value * scale, digits)

        p50, p95, p99 = self.quantiles((0.5, 0.95, 0.99))
        return {
            "count": self.count,
            "mean": fix(self.mean),
            "p50": fix(p50),
            "p95": fix(p95),
            "p99": fix(p99),
            "max": fix(self.max) if self.count else None,
        }


__all__ = ["DEFAULT_ACCURACY", "DEFAULT_MAX_BUCKETS", "Sketch"]
