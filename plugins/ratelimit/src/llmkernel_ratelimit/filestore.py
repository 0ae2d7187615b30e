"""Sliding windows in a memory-mapped file: one limit for every process on a machine.

``[plugin.ratelimit] store = "file"`` (and ``llmkernel serve --workers N``, for its
workers) keeps the counts here instead of in one process's memory. Every operation
takes an exclusive ``flock`` on the file (and a thread lock), so the processes that
map it see one set of windows.

Each bucket is a fixed record: its key's 64-bit BLAKE2b hash, limit, window, the
time it is blocked until, its use so far, and the window cut into ``slices`` equal
slices (amount admitted in each, by slice number). A slice counts until the whole of
it has left the window, so what a window holds is over-estimated by at most one
slice (1 s of a 60 s window at the default 60 slices): never more than the limit in
any window, as :class:`~llmkernel_ratelimit.store.MemoryStore` promises, slightly
sooner full. Buckets are found by open addressing (``capacity`` records, ``_PROBES``
tried per key); one whose windows are empty is reused. When every record tried holds
counts, the one used least recently is taken over and ``ratelimit.file_store_full``
is logged (raise ``capacity``).

Times are ``time.monotonic()``, the same clock in every process of one boot; the
file remembers which boot wrote it and starts empty after a reboot. Created 0600.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import struct
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from llmkernel_ratelimit.store import Claim, Ticket, WindowState

__all__ = ["FileStore", "default_path"]

_MAGIC = b"LKRL"
_VERSION = 1
_HEADER = struct.Struct("<4sIIId")  # magic, version, capacity, slices, boot (wall - monotonic)
_HEADER_SIZE = 64
# hash, limit, window, blocked until, last take, used, oldest slice counted, key length
_FIELDS = struct.Struct("<QdddddqH")
_KEY_BYTES = 96  # the key's text, for ``states`` (truncated)
_HASH = struct.Struct("<Q")
_TOUCHED_USED = struct.Struct("<dd")
_TOUCHED_AT = 32  # offset of the last take and the use in a record
_SLICE = struct.Struct("<qd")  # slice number, amount
_PROBES = 32
_INF = float("inf")
_BOOT_SLACK = 2.0  # seconds two readings of the boot time may differ by


def default_path() -> Path:
    """``$XDG_STATE_HOME/llmkernel/ratelimit.buckets`` (``~/.local/state/...``)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "llmkernel" / "ratelimit.buckets"


@attrs.define(kw_only=True, eq=False)
class _Held:
    """Where a ticket's amount sits: record, key hash, slice number, amount."""

    index: int
    hash: int
    slice: int
    amount: float


class FileStore:
    """The :class:`~llmkernel_ratelimit.store.LimitStore` of every process that opens
    ``path``: thread- and process-safe, non-blocking beyond the lock."""

    def __init__(self, path: str | os.PathLike[str], *, capacity: int = 4096, slices: int = 60):
        if capacity < 16 or slices < 4:
            raise ValueError("capacity must be at least 16 and slices at least 4")
        self.path = Path(path)
        self._capacity = capacity
        self._slices = slices
        self._lock = threading.Lock()
        self._where: dict[str, tuple[int, int]] = {}  # key -> (hash, record), this process's
        self._warned = False
        self._open()

    def __repr__(self) -> str:
        return f"<FileStore {str(self.path)!r} capacity={self._capacity}>"

    # ------------------------------------------------------------------ the file

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                self._init(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _init(self, fd: int) -> None:
        """Adopt the file's geometry, or write a fresh one (new file, other boot)."""
        boot = time.time() - time.monotonic()
        size = os.fstat(fd).st_size
        if size >= _HEADER_SIZE:
            magic, version, capacity, slices, written = _HEADER.unpack(
                os.pread(fd, _HEADER.size, 0)
            )
            if magic == _MAGIC and version == _VERSION and abs(written - boot) < _BOOT_SLACK:
                self._capacity, self._slices = capacity, slices
                self._map(fd, self._size(capacity, slices))
                return
        total = self._size(self._capacity, self._slices)
        os.ftruncate(fd, 0)  # a stale file's counts are gone (sparse: zeros cost nothing)
        os.ftruncate(fd, total)
        os.pwrite(fd, _HEADER.pack(_MAGIC, _VERSION, self._capacity, self._slices, boot), 0)
        self._map(fd, total)

    def _size(self, capacity: int, slices: int) -> int:
        self._record = _FIELDS.size + _KEY_BYTES + (slices + 1) * _SLICE.size
        return _HEADER_SIZE + capacity * self._record

    def _map(self, fd: int, size: int) -> None:
        if os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)
        self._mm = mmap.mmap(fd, size)

    def reopen(self) -> None:
        """After ``os.fork``: a lock of our own (a forked child shares the parent's
        ``flock``, which would then exclude nobody)."""
        self._lock = threading.Lock()
        self._where.clear()
        self._mm.close()
        os.close(self._fd)
        self._open()

    def close(self) -> None:
        with self._lock:
            self._mm.close()
            os.close(self._fd)

    def _locked(self) -> _FileLock:
        return _FileLock(self)

    # ------------------------------------------------------------------ records

    def _offset(self, index: int) -> int:
        return _HEADER_SIZE + index * self._record

    def _hash(self, key: str) -> int:
        value = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
        return value or 1  # 0 marks an empty record

    def _find(self, key: str, now: float, create: bool) -> int | None:
        """The record of ``key`` (made when ``create``), or ``None``."""
        known = self._where.get(key)
        mm = self._mm
        if known is not None:
            value, index = known
            if _HASH.unpack_from(mm, self._offset(index))[0] == value:
                return index
            del self._where[key]  # another process took the record over
        value = self._hash(key)
        start = value % self._capacity
        free: int | None = None
        oldest: tuple[float, int] | None = None
        for step in range(_PROBES):
            index = (start + step) % self._capacity
            offset = self._offset(index)
            stored, _, window, blocked, touched, _, _, _ = _FIELDS.unpack_from(mm, offset)
            if stored == value:
                self._remember(key, value, index)
                return index
            if stored == 0:
                if free is None:
                    free = index
                break  # the key is never past a record no one has used
            if free is None and blocked <= now and self._idle(offset, window, now):
                free = index
            if oldest is None or touched < oldest[0]:
                oldest = (touched, index)
        if not create:
            return None
        if free is None:
            assert oldest is not None
            free = oldest[1]
            if not self._warned:
                self._warned = True
                from llmkernel import log

                log.warning(
                    "ratelimit.file_store_full", path=str(self.path), capacity=self._capacity
                )
        self._reset(free, value, key)
        self._remember(key, value, free)
        return free

    def _remember(self, key: str, value: int, index: int) -> None:
        if len(self._where) >= 4 * self._capacity:
            self._where.clear()
        self._where[key] = (value, index)

    def _reset(self, index: int, value: int, key: str) -> None:
        offset = self._offset(index)
        text = key.encode()[:_KEY_BYTES]
        self._mm[offset : offset + self._record] = bytes(self._record)
        _FIELDS.pack_into(self._mm, offset, value, _INF, 60.0, 0.0, 0.0, 0.0, 0, len(text))
        self._mm[offset + _FIELDS.size : offset + _FIELDS.size + len(text)] = text

    def _width(self, window: float) -> float:
        return window / self._slices

    def _idle(self, offset: int, window: float, now: float) -> bool:
        """Whether a record's window has nothing left in it."""
        _, _, _, _, touched, used, _, _ = _FIELDS.unpack_from(self._mm, offset)
        return bool(used <= 0 or now - touched >= window + self._width(window))

    def _expire(
        self, index: int, limit: float, window: float, now: float
    ) -> tuple[float, float, float, float]:
        """``(used, limit, window, blocked until)`` of a record at ``now``, once the
        slices that left its window are cleared; it takes the limit and window a claim
        brings (``inf``: keep the stored, learned limit)."""
        mm = self._mm
        offset = self._offset(index)
        value, stored_limit, stored_window, blocked, touched, used, low, length = (
            _FIELDS.unpack_from(mm, offset)
        )
        changed = False
        if window != stored_window:  # a new window cuts slices anew: start empty
            self._clear(offset)
            stored_window, used, changed = window, 0.0, True
        if limit not in (_INF, stored_limit):
            stored_limit, changed = limit, True
        floor = math.floor(now / self._width(stored_window)) - self._slices  # oldest counted
        if floor != low:
            slots = self._slices + 1
            if floor - low >= slots or floor < low - slots:  # all gone (or another boot)
                self._clear(offset)
                used = 0.0
            elif floor > low:
                ring = offset + _FIELDS.size + _KEY_BYTES
                for number in range(low, floor):
                    position = ring + (number % slots) * _SLICE.size
                    stored, amount = _SLICE.unpack_from(mm, position)
                    if stored == number and amount:
                        used -= amount
                        _SLICE.pack_into(mm, position, 0, 0.0)
                if used < 1e-9:
                    used = 0.0  # no float drift once empty
            low, changed = max(floor, low) if floor >= low - slots else floor, True
        if changed:
            _FIELDS.pack_into(
                mm, offset, value, stored_limit, stored_window, blocked, touched, used, low, length
            )
        return used, stored_limit, stored_window, blocked

    def _clear(self, offset: int) -> None:
        ring = offset + _FIELDS.size + _KEY_BYTES
        size = (self._slices + 1) * _SLICE.size
        self._mm[ring : ring + size] = bytes(size)

    def _fields(self, index: int) -> tuple[float, float, float]:
        _, limit, window, blocked, _, _, _, _ = _FIELDS.unpack_from(self._mm, self._offset(index))
        return limit, window, blocked

    def _wait(self, index: int, used: float, amount: float, now: float) -> float:
        """Seconds until ``amount`` fits in the record ``index`` holding ``used``."""
        limit, window, blocked_until = self._fields(index)
        if amount > limit:
            return _INF
        blocked = max(0.0, blocked_until - now)
        excess = used + amount - limit
        if excess <= 1e-9:
            return blocked
        width = self._width(window)
        ring = self._offset(index) + _FIELDS.size + _KEY_BYTES
        slots = sorted(
            _SLICE.unpack_from(self._mm, ring + i * _SLICE.size) for i in range(self._slices + 1)
        )
        freed = 0.0
        for number, held in slots:
            if not held:
                continue
            freed += held
            if freed >= excess - 1e-9:
                return max(blocked, float((number + self._slices + 1) * width - now))
        return max(blocked, window)

    def _add(self, index: int, now: float, amount: float, window: float, used: float) -> _Held:
        mm = self._mm
        offset = self._offset(index)
        number = math.floor(now / self._width(window))
        position = offset + _FIELDS.size + _KEY_BYTES + (number % (self._slices + 1)) * _SLICE.size
        stored, held = _SLICE.unpack_from(mm, position)
        if stored != number:
            used -= held  # a slice of another turn (cleared by _expire already)
            held = 0.0
        _SLICE.pack_into(mm, position, number, held + amount)
        _TOUCHED_USED.pack_into(mm, offset + _TOUCHED_AT, now, used + amount)
        value: int = _HASH.unpack_from(mm, offset)[0]
        return _Held(index=index, hash=value, slice=number, amount=amount)

    # ------------------------------------------------------------------ LimitStore

    def take(self, claims: Sequence[Claim], now: float) -> Ticket | float:
        with self._locked():
            found = []
            wait = 0.0
            for claim in claims:
                index = self._find(claim.key, now, create=True)
                assert index is not None
                used, limit, window, blocked = self._expire(index, claim.limit, claim.window, now)
                found.append((index, window, used))
                if used + claim.amount > limit or blocked > now:
                    wait = max(wait, self._wait(index, used, claim.amount, now))
            if wait > 0:
                return wait
            ticket = Ticket()
            slots = ticket.slots
            for (index, window, used), claim in zip(found, claims, strict=True):
                slots.append((claim.key, self._add(index, now, claim.amount, window, used)))
            return ticket

    def wait_for(self, claims: Sequence[Claim], now: float) -> float:
        with self._locked():
            wait = 0.0
            for claim in claims:
                index = self._find(claim.key, now, create=True)
                assert index is not None
                used = self._expire(index, claim.limit, claim.window, now)[0]
                wait = max(wait, self._wait(index, used, claim.amount, now))
            return wait

    def correct(self, ticket: Ticket, amounts: Mapping[str, float]) -> None:
        with self._locked():
            mm = self._mm
            for key, held in ticket.slots:
                if key not in amounts or not isinstance(held, _Held):
                    continue
                new = max(0.0, amounts[key])
                offset = self._offset(held.index)
                if _HASH.unpack_from(mm, offset)[0] == held.hash:
                    ring = offset + _FIELDS.size + _KEY_BYTES
                    position = ring + (held.slice % (self._slices + 1)) * _SLICE.size
                    number, amount = _SLICE.unpack_from(mm, position)
                    if number == held.slice:  # still in the window
                        fixed = max(0.0, amount + new - held.amount)
                        _SLICE.pack_into(mm, position, number, fixed)
                        fields = list(_FIELDS.unpack_from(mm, offset))
                        fields[5] = max(0.0, fields[5] + fixed - amount)
                        _FIELDS.pack_into(mm, offset, *fields)
                held.amount = new

    def block(self, key: str, until: float, limit: float, window: float) -> None:
        with self._locked():
            index = self._find(key, until, create=True)
            assert index is not None
            offset = self._offset(index)
            fields = list(_FIELDS.unpack_from(self._mm, offset))
            if fields[1] == _INF and limit != _INF:
                fields[1] = limit
            fields[3] = max(fields[3], until)
            _FIELDS.pack_into(self._mm, offset, *fields)

    def observe(self, key: str, limit: float, remaining: float, reset: float, now: float) -> None:
        with self._locked():
            index = self._find(key, now, create=True)
            assert index is not None
            mm = self._mm
            offset = self._offset(index)
            fields = list(_FIELDS.unpack_from(mm, offset))
            window = fields[2]
            width = self._width(window)
            current = math.floor(now / width)
            ring = offset + _FIELDS.size + _KEY_BYTES
            slots = self._slices + 1
            mm[ring : ring + slots * _SLICE.size] = bytes(slots * _SLICE.size)
            fields[1], fields[5], fields[6] = limit, 0.0, current - self._slices
            held = max(0.0, limit - remaining)
            frees_at = now + min(max(reset, 0.0), window)
            # the slice that leaves the window at ``frees_at`` (counted until then)
            number = min(math.ceil(frees_at / width) - self._slices - 1, current)
            if held > 0 and number >= current - self._slices:
                _SLICE.pack_into(mm, ring + (number % slots) * _SLICE.size, number, held)
                fields[5] = held
            _FIELDS.pack_into(mm, offset, *fields)

    def states(self, now: float) -> dict[str, WindowState]:
        with self._locked():
            out: dict[str, WindowState] = {}
            mm = self._mm
            for index in range(self._capacity):
                offset = self._offset(index)
                value, limit, window, blocked, _, _, _, length = _FIELDS.unpack_from(mm, offset)
                if value == 0:
                    continue
                used = self._expire(index, limit, window, now)[0]
                if not used and blocked <= now:
                    continue
                key = bytes(mm[offset + _FIELDS.size : offset + _FIELDS.size + length]).decode(
                    errors="replace"
                )
                whole = self._wait(index, used, limit, now) if limit != _INF else 0.0
                out[key] = WindowState(
                    limit=limit,
                    window=window,
                    used=used,
                    remaining=max(0.0, limit - used) if blocked <= now else 0.0,
                    reset=max(0.0, whole if math.isfinite(whole) else window, blocked - now),
                )
            return out


class _FileLock:
    """The thread lock and the file's ``flock``, together."""

    __slots__ = ("store",)

    def __init__(self, store: FileStore) -> None:
        self.store = store

    def __enter__(self) -> None:
        self.store._lock.acquire()
        try:
            fcntl.flock(self.store._fd, fcntl.LOCK_EX)
        except BaseException:
            self.store._lock.release()
            raise

    def __exit__(self, *exc: Any) -> None:
        try:
            fcntl.flock(self.store._fd, fcntl.LOCK_UN)
        finally:
            self.store._lock.release()
