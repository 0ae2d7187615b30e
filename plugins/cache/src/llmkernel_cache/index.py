"""The semantic layer's vectors in memory: one numpy matrix per partition.

Brute force: a lookup is one matrix-vector product over the partition's rows
(about 0.5 ms for 10,000 vectors of 384 dimensions), then the few best rows are
checked by the guards. Rows are appended in place (the matrix grows by doubling);
a removed row is zeroed and skipped, and the matrix is compacted once half of it
is removed. Thread-safe: the event loop searches and adds, the cache's worker
loads rows from the store.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterable

    from llmkernel_cache.guards import Features
    from llmkernel_cache.store import VectorRow

__all__ = ["Candidate", "SemanticIndex", "as_vector", "to_bytes"]

_DTYPE = np.dtype("<f4")  # as stored: little-endian float32


def as_vector(values: Any) -> np.ndarray[Any, Any]:
    """``values`` as a unit-length float32 vector (a zero vector stays zero)."""
    vector = np.asarray(values, dtype=_DTYPE).reshape(-1)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def to_bytes(vector: np.ndarray[Any, Any]) -> bytes:
    return np.asarray(vector, dtype=_DTYPE).tobytes()


@attrs.frozen(kw_only=True)
class Candidate:
    """A stored prompt close to the one asked: its entry's key and the similarity."""

    key: str
    prompt: str
    similarity: float
    expires: float
    features: Features | None = None


@attrs.define(kw_only=True)
class _Partition:
    dim: int
    matrix: np.ndarray[Any, Any]
    keys: list[str | None] = attrs.field(factory=list)
    prompts: list[str] = attrs.field(factory=list)
    expires: list[float] = attrs.field(factory=list)
    rows: dict[str, int] = attrs.field(factory=dict)  # key -> row
    features: dict[int, Features] = attrs.field(factory=dict)
    removed: int = 0
    #: the largest store rowid read, and when (timer seconds), for refreshes
    rowid: int = 0
    loaded: float = float("-inf")

    @property
    def count(self) -> int:
        return len(self.keys)

    def add(self, key: str, prompt: str, vector: np.ndarray[Any, Any], expires: float) -> None:
        row = self.rows.get(key)
        if row is not None:  # the same prompt stored again: refresh it in place
            self.matrix[row] = vector
            self.expires[row] = expires
            return
        if self.count == len(self.matrix):
            grown = np.zeros((max(16, 2 * len(self.matrix)), self.dim), dtype=_DTYPE)
            grown[: self.count] = self.matrix[: self.count]
            self.matrix = grown
        row = self.count
        self.matrix[row] = vector
        self.keys.append(key)
        self.prompts.append(prompt)
        self.expires.append(expires)
        self.rows[key] = row

    def remove(self, key: str) -> bool:
        row = self.rows.pop(key, None)
        if row is None:
            return False
        self.matrix[row] = 0.0
        self.keys[row] = None
        self.features.pop(row, None)
        self.removed += 1
        if self.removed * 2 > self.count:
            self._compact()
        return True

    def _compact(self) -> None:
        live = [i for i, k in enumerate(self.keys) if k is not None]
        matrix = np.zeros((max(16, len(live)), self.dim), dtype=_DTYPE)
        matrix[: len(live)] = self.matrix[live]
        self.matrix = matrix
        self.keys = [self.keys[i] for i in live]
        self.prompts = [self.prompts[i] for i in live]
        self.expires = [self.expires[i] for i in live]
        self.features = {
            new: self.features[old] for new, old in enumerate(live) if old in self.features
        }
        self.rows = {k: i for i, k in enumerate(self.keys) if k is not None}
        self.removed = 0


class SemanticIndex:
    """Vectors by partition, bounded in rows: past ``max_rows`` the least recently
    searched partitions are dropped (a store-backed cache reads them again)."""

    def __init__(self, *, max_rows: int) -> None:
        self.max_rows = max_rows
        self._partitions: OrderedDict[str, _Partition] = OrderedDict()
        self._rows = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._rows - sum(p.removed for p in self._partitions.values())

    def has(self, partition: str) -> bool:
        return partition in self._partitions

    def state(self, partition: str) -> tuple[int, float] | None:
        """``(largest store rowid read, when)`` of a loaded partition, else ``None``."""
        with self._lock:
            found = self._partitions.get(partition)
            return None if found is None else (found.rowid, found.loaded)

    def add(
        self,
        partition: str,
        key: str,
        prompt: str,
        vector: np.ndarray[Any, Any],
        expires: float,
    ) -> None:
        with self._lock:
            part = self._partition(partition, len(vector))
            if part is None:
                return
            before = part.count
            part.add(key, prompt, vector, expires)
            self._rows += part.count - before
            self._bound(partition)

    def load(
        self, partition: str, dim: int, rowid: int, rows: Iterable[VectorRow], when: float
    ) -> None:
        """Rows read from the store (the first load, or those written since)."""
        with self._lock:
            part = self._partitions.get(partition)
            if part is None:
                part = self._partitions[partition] = _Partition(
                    dim=dim, matrix=np.zeros((16, dim), dtype=_DTYPE)
                )
            before = part.count
            for row in rows:
                vector = np.frombuffer(row.vector, dtype=_DTYPE)
                if len(vector) == dim:
                    part.add(row.key, row.prompt, vector, row.expires)
            part.rowid = max(part.rowid, rowid)
            part.loaded = when
            self._rows += part.count - before
            self._bound(partition)

    def remove(self, partition: str, key: str) -> None:
        with self._lock:
            part = self._partitions.get(partition)
            if part is not None:
                part.remove(key)

    def clear(self) -> None:
        with self._lock:
            self._partitions.clear()
            self._rows = 0

    def search(
        self, partition: str, vector: np.ndarray[Any, Any], *, floor: float, limit: int
    ) -> list[Candidate]:
        """Up to ``limit`` rows of ``partition`` with a similarity of at least
        ``floor`` to ``vector`` (unit length), best first."""
        with self._lock:
            part = self._partitions.get(partition)
            if part is None or part.count == 0 or len(vector) != part.dim:
                return []
            self._partitions.move_to_end(partition)
            count = part.count
            matrix = part.matrix  # rows below count are never rewritten but by add/remove
            keys, prompts, expires, features = part.keys, part.prompts, part.expires, part.features
        scores = matrix[:count] @ vector
        if count > limit:
            best = np.argpartition(scores, count - limit)[count - limit :]
        else:
            best = np.arange(count)
        best = best[np.argsort(scores[best])[::-1]]
        out = []
        for row in best.tolist():
            score = float(scores[row])
            if score < floor:
                break
            key = keys[row] if row < len(keys) else None
            if key is None:
                continue
            out.append(
                Candidate(
                    key=key,
                    prompt=prompts[row],
                    similarity=score,
                    expires=expires[row],
                    features=features.get(row),
                )
            )
        return out

    def remember_features(self, partition: str, key: str, features: Features) -> None:
        """Keep a candidate's guard features: read once per stored prompt."""
        with self._lock:
            part = self._partitions.get(partition)
            row = None if part is None else part.rows.get(key)
            if part is not None and row is not None:
                part.features[row] = features

    def _partition(self, partition: str, dim: int) -> _Partition | None:
        part = self._partitions.get(partition)
        if part is None:
            part = self._partitions[partition] = _Partition(
                dim=dim, matrix=np.zeros((16, dim), dtype=_DTYPE)
            )
        return part if part.dim == dim else None

    def _bound(self, keep: str) -> None:
        while self._rows > self.max_rows and len(self._partitions) > 1:
            name = next(iter(self._partitions))
            if name == keep:
                self._partitions.move_to_end(name)
                name = next(iter(self._partitions))
            self._rows -= self._partitions.pop(name).count
        part = self._partitions.get(keep)
        if part is not None and self._rows > self.max_rows:  # one partition over the bound
            for key in [k for k in part.keys[: self._rows - self.max_rows] if k is not None]:
                part.remove(key)
            part._compact()
            self._rows = part.count
