"""Budget primitives in Redis (the ``llmkernel.budgets`` script): integer
micro-dollars, never ``INCRBYFLOAT``.

A *counter* is the budgets plugin's counter string (a limit's name, its per-value
scope and its period: ``"team|tenant=a|2026-12"``); each carries its spend and its
live reservations. The operations mirror the plugin's SQLite store
(``llmkernel_budgets.store``):

- :meth:`SharedBudgets.reserve`: one call's worst case against every applicable
  counter, all or nothing, with an expiry (a crashed instance's reservation is
  dropped once it expires);
- :meth:`SharedBudgets.settle`: the actual cost into the spend, the reservation
  (and, for a slab's call, its share of the lease) out; idempotent: a second
  settle of the same id changes nothing;
- :meth:`SharedBudgets.lease`, :meth:`SharedBudgets.renew`: the slab fast path: a
  lease per (owner, counter) that is a reservation whose amount the owner sets,
  granted as ``reserve_slow`` grants a SQLite slab (a slab when the room holds two,
  else the call reserved exactly);
- :meth:`SharedBudgets.reseed`: raise a counter's spend to what a ledger records
  (after Redis restarted empty); never lowers it. Each ledger (``source``)
  accounts for its own part, so per-instance ledgers add up and a shared ledger
  counts once.

Amounts: a limit is floored to whole micro-dollars; a reservation or a cost is
rounded up, so rounding never lets a budget overspend.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING

import attrs

from llmkernel_redis.keys import part
from llmkernel_redis.scripts import load

if TYPE_CHECKING:
    from llmkernel_redis.link import RedisLink

__all__ = [
    "BUDGETS",
    "CounterState",
    "Lease",
    "Refused",
    "SharedBudgets",
    "from_micros",
    "to_micros",
]

BUDGETS = load("budgets.lua", "llmkernel.budgets", 1)
LAYOUT = "bud1"
_MICRO = Decimal(1_000_000)
_US = 1_000_000
#: a settled id is remembered this long (a second settle within it is a no-op)
SETTLED_TTL = 2 * 86400


def to_micros(amount: Decimal, *, up: bool = True) -> int:
    """``amount`` in whole micro-dollars, rounded up (``up``) or down."""
    scaled = (amount * _MICRO).to_integral_value(ROUND_CEILING if up else ROUND_FLOOR)
    return int(scaled)


def from_micros(micros: int) -> Decimal:
    return Decimal(micros) / _MICRO


@attrs.frozen(kw_only=True)
class Refused:
    """Not reserved: ``counter`` would overspend (its ``spent`` and ``reserved``)."""

    counter: str
    spent: Decimal
    reserved: Decimal


@attrs.frozen(kw_only=True)
class Lease:
    """Per counter (in the order asked): what the owner's lease holds now, and
    whether this call was reserved exactly (near the limit) instead."""

    granted: tuple[Decimal, ...]
    exact: tuple[bool, ...]


@attrs.frozen(kw_only=True)
class CounterState:
    spent: Decimal
    reserved: Decimal
    reservations: int


class SharedBudgets:
    """The ``llmkernel.budgets`` script's operations on one Redis link."""

    def __init__(self, link: RedisLink, prefix: str) -> None:
        self.link = link
        self.prefix = prefix

    def keys(self, counter: str) -> tuple[str, str]:
        base = f"{self.prefix}{LAYOUT}:{part(counter)}"
        return base, f"{base}:r"

    def _keys(self, counters: Sequence[str]) -> list[str]:
        return [k for counter in counters for k in self.keys(counter)]

    async def reserve(
        self,
        reservation: str,
        amounts: Sequence[tuple[str, Decimal, Decimal]],
        *,
        ttl: float,
        key_ttl: int = 40 * 86400,
    ) -> Refused | None:
        """Reserve per ``(counter, limit, amount)``, all or none, live for ``ttl``
        seconds. ``None`` when reserved (or already), else the first refusal."""
        args: list[object] = ["reserve", reservation, int(ttl * _US), len(amounts)]
        for _, limit, amount in amounts:
            args += [to_micros(limit, up=False), to_micros(amount), key_ttl]
        reply = await self.link.script(BUDGETS, self._keys([a[0] for a in amounts]), args)
        if int(reply[0]) == 1:
            return None
        index = int(reply[1]) - 1
        return Refused(
            counter=amounts[index][0],
            spent=from_micros(int(reply[2])),
            reserved=from_micros(int(reply[3])),
        )

    async def settle(
        self,
        reservation: str,
        costs: Sequence[tuple[str, Decimal]],
        *,
        source: str,
        lease: str | None = None,
        shares: Sequence[Decimal] | None = None,
        key_ttl: int = 40 * 86400,
    ) -> bool:
        """Add each ``(counter, actual cost)`` to the spend, accounted to ledger
        ``source``, and drop ``reservation``; with ``lease``, take ``shares`` (the
        part of each cost the lease covered) out of that lease. Returns whether this
        call settled it (``False``: settled before, nothing changed)."""
        marker = f"{self.prefix}{LAYOUT}:settled:{part(reservation)}"
        args: list[object] = [
            "settle",
            reservation,
            part(source),
            f"lease:{lease}" if lease else "",
            SETTLED_TTL,
            len(costs),
        ]
        for i, (_, cost) in enumerate(costs):
            share = shares[i] if shares is not None else Decimal(0)
            args += [to_micros(max(cost, Decimal(0))), to_micros(share, up=False), key_ttl]
        keys = [marker, *self._keys([c for c, _ in costs])]
        return int(await self.link.script(BUDGETS, keys, args)) == 1

    async def lease(
        self,
        owner: str,
        reservation: str,
        counters: Sequence[tuple[str, Decimal, Decimal]],
        *,
        worst: Decimal,
        slab: Decimal,
        lease_ttl: float,
        reservation_ttl: float,
        key_ttl: int = 40 * 86400,
    ) -> Lease | Refused:
        """Lease for ``owner`` per ``(counter, limit, need)``, ``need`` being what
        the owner has in flight or pending there: ``need + worst + slab`` when the
        room left holds two slabs, else ``need`` with this call (``reservation``,
        ``worst``) reserved exactly. All counters or none."""
        args: list[object] = [
            "lease",
            f"lease:{owner}",
            reservation,
            int(lease_ttl * _US),
            int(reservation_ttl * _US),
            to_micros(worst),
            to_micros(slab),
            len(counters),
        ]
        for _, limit, need in counters:
            args += [to_micros(limit, up=False), to_micros(need), key_ttl]
        reply = await self.link.script(BUDGETS, self._keys([c[0] for c in counters]), args)
        if int(reply[0]) == 0:
            index = int(reply[1]) - 1
            return Refused(
                counter=counters[index][0],
                spent=from_micros(int(reply[2])),
                reserved=from_micros(int(reply[3])),
            )
        granted = tuple(from_micros(int(g)) for g in reply[1::2])
        exact = tuple(int(e) == 1 for e in reply[2::2])
        return Lease(granted=granted, exact=exact)

    async def renew(
        self,
        owner: str,
        counters: Sequence[tuple[str, Decimal | None]],
        *,
        lease_ttl: float,
        key_ttl: int = 40 * 86400,
    ) -> tuple[Decimal, ...]:
        """Extend ``owner``'s leases by ``lease_ttl`` and set each to its amount
        (``None``: as it is; ``0`` gives it back). Returns each lease's amount now:
        ``0`` for one that had expired (its owner must stop handing it out)."""
        args: list[object] = ["renew", f"lease:{owner}", int(lease_ttl * _US), len(counters)]
        for _, amount in counters:
            args += [-1 if amount is None else to_micros(amount), key_ttl]
        reply = await self.link.script(BUDGETS, self._keys([c for c, _ in counters]), args)
        return tuple(from_micros(int(a)) for a in reply)

    async def reseed(
        self,
        totals: Sequence[tuple[str, Decimal]],
        *,
        source: str,
        key_ttl: int = 40 * 86400,
    ) -> tuple[Decimal, ...]:
        """Raise what ledger ``source`` accounts for in each counter to its
        ``total`` where Redis holds less; never lowers. Returns each spend now."""
        args: list[object] = ["reseed", part(source), len(totals)]
        for _, total in totals:
            args += [to_micros(total), key_ttl]
        reply = await self.link.script(BUDGETS, self._keys([c for c, _ in totals]), args)
        return tuple(from_micros(int(s)) for s in reply)

    async def read(self, counters: Sequence[str]) -> tuple[CounterState, ...]:
        """Spend and live reservations of each counter (expired ones dropped)."""
        reply = await self.link.script(BUDGETS, self._keys(counters), ["read"])
        return tuple(
            CounterState(
                spent=from_micros(int(reply[i])),
                reserved=from_micros(int(reply[i + 1])),
                reservations=int(reply[i + 2]),
            )
            for i in range(0, len(reply), 3)
        )
