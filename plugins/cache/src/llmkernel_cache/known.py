"""Which keys the persistent store may hold, known in memory: a Bloom filter.

A lookup that misses the memory LRU asks this filter before it goes to the store's
worker thread: "certainly not there" (no false negatives for keys it was told
about) settles the miss on the event loop, with no thread hop; "maybe" (the key
was added, or a false positive: about 0.2 % when full, under 3 % at twice its
design size) goes to the store as before. Deleted and expired keys stay in the
filter until it is rebuilt: they only cost a hop.

The filter is written by one thread (the cache's worker); the event loop only
reads it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["KeyFilter"]

_HASHES = 4  # bit positions per key: 32 bits each, from the first 128 bits of the key
_BITS_PER_KEY = 16
_MIN_BITS = 1 << 16
_MAX_BITS = 1 << 30  # 128 MiB would be absurd; past the design size it only fills up


def _hash(key: str) -> int:
    """128 bits of a key. Cache keys are SHA-256 hex digests: their first 32 hex
    digits; any other string is hashed first."""
    try:
        return int(key[:32], 16)
    except ValueError:
        return int(hashlib.sha256(key.encode()).hexdigest()[:32], 16)


class KeyFilter:
    """A Bloom filter of cache keys, sized for ``capacity`` keys."""

    def __init__(self, capacity: int) -> None:
        bits = _MIN_BITS
        while bits < capacity * _BITS_PER_KEY and bits < _MAX_BITS:
            bits <<= 1
        self.capacity = capacity
        self.added = 0
        self._mask = bits - 1
        self._bits = bytearray(bits >> 3)

    @property
    def full(self) -> bool:
        """Past twice its design size: rebuild it (false positives pass 3 %)."""
        return self.added > 2 * self.capacity

    def add(self, key: str) -> None:
        h, mask, bits = _hash(key), self._mask, self._bits
        for _ in range(_HASHES):
            i = h & mask
            bits[i >> 3] |= 1 << (i & 7)
            h >>= 32
        self.added += 1

    def update(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.add(key)

    def __contains__(self, key: str) -> bool:
        h, mask, bits = _hash(key), self._mask, self._bits
        for _ in range(_HASHES):
            i = h & mask
            if not bits[i >> 3] & (1 << (i & 7)):
                return False
            h >>= 32
        return True
