"""A model's price: base rates, long-context tiers, a batch discount, and its source.

Money is ``Decimal`` throughout. ``TieredPrice.cost(usage)`` charges every usage bucket
at its own rate (see :class:`llmkernel.types.Usage`): uncached input, cache reads,
5-minute and 1-hour cache writes, plain output and reasoning output. A tier whose
threshold the request's input passes reprices the whole request, as Anthropic and
Google bill long prompts.
"""

from __future__ import annotations

from decimal import Decimal

import attrs

from llmkernel.types import ModelPrice, Usage

__all__ = ["Tier", "TieredPrice"]


@attrs.frozen(kw_only=True)
class Tier:
    """Rates for requests whose input tokens exceed ``above_input_tokens``."""

    above_input_tokens: int
    price: ModelPrice


@attrs.frozen(kw_only=True)
class TieredPrice:
    """A ``price_model`` answer: ``base`` rates, optional ``tiers`` (ascending
    thresholds), ``batch_discount`` (the fraction of the price a batch call pays,
    ``0.5`` for half), and the facts' ``source``, ``via`` and ``checked`` date.

    It exposes ``input``, ``output``, ``cached_input``, ``cache_write``,
    ``cache_write_1h`` and ``reasoning`` of the base rates, like
    :class:`~llmkernel.types.ModelPrice`, so code reading those keeps working.
    """

    model: str
    base: ModelPrice
    tiers: tuple[Tier, ...] = ()
    batch_discount: Decimal | None = None
    source: str = ""
    via: str = ""
    checked: str = ""
    note: str = ""

    @property
    def currency(self) -> str:
        return self.base.currency

    @property
    def input(self) -> Decimal:
        return self.base.input

    @property
    def output(self) -> Decimal:
        return self.base.output

    @property
    def cached_input(self) -> Decimal | None:
        return self.base.cached_input

    @property
    def cache_write(self) -> Decimal | None:
        return self.base.cache_write

    @property
    def cache_write_1h(self) -> Decimal | None:
        return self.base.cache_write_1h

    @property
    def reasoning(self) -> Decimal | None:
        return self.base.reasoning

    def rates_for(self, usage: Usage) -> ModelPrice:
        """The rates that apply to ``usage``: the highest tier its input passes."""
        rates = self.base
        for tier in self.tiers:
            if usage.input_tokens > tier.above_input_tokens:
                rates = tier.price
        return rates

    def cost(self, usage: Usage) -> Decimal:
        """What the provider bills for ``usage``, exactly."""
        return self.rates_for(usage).cost(usage)

    def max_rates(self) -> ModelPrice:
        """The highest tier's rates: an upper bound for a worst-case estimate."""
        return self.tiers[-1].price if self.tiers else self.base

    def batch(self) -> TieredPrice:
        """This price with the batch discount applied; ``ValueError`` when the
        provider has no documented batch discount for the model."""
        if self.batch_discount is None:
            raise ValueError(f"no batch discount is known for {self.model!r}")
        factor = self.batch_discount
        return attrs.evolve(
            self,
            base=_scaled(self.base, factor),
            tiers=tuple(
                Tier(above_input_tokens=t.above_input_tokens, price=_scaled(t.price, factor))
                for t in self.tiers
            ),
            batch_discount=None,
            note=f"batch price ({factor} of standard)",
        )


def _scaled(price: ModelPrice, factor: Decimal) -> ModelPrice:
    def scale(value: Decimal | None) -> Decimal | None:
        return None if value is None else value * factor

    return attrs.evolve(
        price,
        input=price.input * factor,
        output=price.output * factor,
        cached_input=scale(price.cached_input),
        cache_write=scale(price.cache_write),
        cache_write_1h=scale(price.cache_write_1h),
        reasoning=scale(price.reasoning),
    )
