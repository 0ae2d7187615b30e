"""A/B tests: ``[models.NAME] variants = {...}, split = {...}`` splits a model's
calls between variants, each caller kept on one by a stable hash."""

from __future__ import annotations

from collections import Counter

import pytest

from llmkernel import ConfigError, Kernel, Outcome, RequestContext, hookimpl
from llmkernel.testing.scripted import ScriptedPlugin

EXPERIMENT = {
    "providers": {"a": {"type": "scripted"}, "b": {"type": "scripted"}},
    "models": {
        "summarize": {"variants": {"x": "a/m1", "y": "b/m2"}, "split": {"x": 0.9, "y": 0.1}},
    },
}


class Variants:
    __llmkernel_name__ = "variants"

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, str]] = []

    @hookimpl
    def on_request_end(self, ctx: RequestContext, outcome: Outcome) -> None:
        assert outcome.candidate is not None
        self.seen.append((ctx.variant, outcome.candidate.provider))


def kernel(plugins: tuple[object, ...] = ()) -> Kernel:
    return Kernel.from_config(EXPERIMENT, plugins=[ScriptedPlugin(), *plugins], entry_points=False)


def test_the_split_holds_within_two_points_over_10000_callers() -> None:
    k = kernel()
    config = k.config.experiments["summarize"]
    counts = Counter(config.choose({"tenant": f"t{i}"}, "x")[0] for i in range(10_000))
    assert abs(counts["x"] / 10_000 - 0.9) < 0.02
    assert abs(counts["y"] / 10_000 - 0.1) < 0.02


async def test_a_caller_stays_on_its_variant_and_the_call_records_it() -> None:
    variants = Variants()
    async with kernel((variants,)) as k:
        for _ in range(5):
            await k.achat("summarize", "hi", metadata={"session": "s-1"})
        for i in range(40):
            await k.achat("summarize", "hi", metadata={"tenant": f"t{i}"})
    sticky = variants.seen[:5]
    assert len(set(sticky)) == 1 and sticky[0][0] in ("x", "y")
    for variant, provider in variants.seen:
        assert provider == {"x": "a", "y": "b"}[variant or ""]
    assert {v for v, _ in variants.seen} == {"x", "y"}  # both variants served


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"variants": {"x": "a/m1"}, "split": {"x": 0.5}}, "add up to 1"),
        ({"variants": {"x": "a/m1", "y": "b/m2"}, "split": {"x": 1.0}}, "a share to each"),
        ({"variants": {"x": "a/m1"}, "split": {"x": 1}, "sticky": "tenant"}, "'sticky'"),
        ({"variants": {"x": 3}, "split": {"x": 1}}, "model string"),
    ],
)
def test_a_bad_experiment_names_what_is_wrong(table: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Kernel.from_config({"models": {"summarize": table}}, entry_points=False)
