"""The gateway's part in routing: deployments disabled, reprioritized or reweighted
while it runs, and session affinity, in every config the kernel is given.

``PATCH /admin/deployments/{provider/model}`` keeps a deployment's live settings
in the key store (:class:`Overrides`, read by every worker and instance):

- ``disabled``: :class:`GatewayRouting`'s ``filter_candidates`` drops it from every
  call, whatever the strategy (a call with nothing else left fails naming why);
- ``priority`` (an integer, default 0): after the configured strategy has ordered
  the candidates, those with a higher priority go first (the strategy's order is
  kept among equals);
- ``weight`` (a number >= 0): the candidate's ``weight`` tag, which the
  ``weighted`` strategy reads (a ``[routing.weighted] weights`` entry of the config
  file names it there instead: change it in the file).

The gateway's strategy wraps the configured one by name: :func:`with_gateway_strategy`
turns ``[routing] strategy = X`` into the registered strategy ``gateway`` with
``inner = X``, so every config the kernel builds (at start, after a reload, after a
key's limits changed) keeps the wrap; no object is patched onto a kernel.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from llmkernel import hookimpl
from llmkernel.context import Drop
from llmkernel.errors import ConfigError
from llmkernel_gateway.records import BadInput

if TYPE_CHECKING:
    from llmkernel.config import Config
    from llmkernel.context import RequestContext
    from llmkernel.kernel import Kernel
    from llmkernel.routing import Candidate
    from llmkernel_gateway import affinity

__all__ = [
    "STRATEGY",
    "GatewayRouting",
    "GatewayStrategy",
    "Overrides",
    "parse_override",
    "with_gateway_strategy",
]

STRATEGY = "gateway"
DISABLED = "disabled by an operator (PATCH /admin/deployments)"


class Overrides:
    """``provider/model`` -> its live settings; replaced whole on every change."""

    def __init__(self) -> None:
        self.table: Mapping[str, Mapping[str, Any]] = {}
        self.disabled: frozenset[str] = frozenset()
        self.priority: Mapping[str, int] = {}
        self.weight: Mapping[str, float] = {}

    def update(self, table: Mapping[str, Mapping[str, Any]]) -> None:
        self.table = {k: dict(v) for k, v in table.items()}
        self.disabled = frozenset(k for k, v in table.items() if v.get("disabled"))
        self.priority = {k: int(v["priority"]) for k, v in table.items() if "priority" in v}
        self.weight = {k: float(v["weight"]) for k, v in table.items() if "weight" in v}

    def of(self, name: str) -> dict[str, Any]:
        found = self.table.get(name, {})
        return {
            "disabled": bool(found.get("disabled", False)),
            "priority": found.get("priority"),
            "weight": found.get("weight"),
        }


def parse_override(data: Any, current: Mapping[str, Any]) -> dict[str, Any]:
    """A PATCH body on top of the deployment's ``current`` settings; ``null``
    removes a setting."""
    if not isinstance(data, Mapping):
        raise BadInput("the body must be a JSON object")
    out = dict(current)
    for field, value in data.items():
        if field == "disabled":
            if not isinstance(value, bool):
                raise BadInput("disabled must be true or false", "disabled")
            if value:
                out["disabled"] = True
            else:
                out.pop("disabled", None)
        elif field == "priority":
            if value is None:
                out.pop("priority", None)
            elif isinstance(value, bool) or not isinstance(value, int) or abs(value) > 1_000_000:
                raise BadInput("priority must be an integer (higher goes first)", "priority")
            else:
                out["priority"] = value
        elif field == "weight":
            if value is None:
                out.pop("weight", None)
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise BadInput("weight must be a number >= 0", "weight")
            else:
                out["weight"] = value
        else:
            raise BadInput(
                f"unknown field {field!r}; a deployment has: disabled, priority, weight", field
            )
    return out


class GatewayStrategy:
    """The configured strategy, with the live weights and priorities, then the
    session's deployment first (affinity)."""

    def __init__(
        self, inner: Any, overrides: Overrides, sessions: affinity.Sessions | None
    ) -> None:
        self.inner = inner
        self.overrides = overrides
        self.sessions = sessions

    def select(self, ctx: RequestContext, candidates: list[Candidate]) -> list[Candidate]:
        overrides = self.overrides
        weight = overrides.weight
        if weight:
            candidates = [
                attrs.evolve(c, tags={**c.tags, "weight": weight[c.qualified]})
                if c.qualified in weight
                else c
                for c in candidates
            ]
        ordered: list[Candidate] = self.inner.select(ctx, candidates) or list(candidates)
        priority = overrides.priority
        if priority and len(ordered) > 1:
            ordered = sorted(ordered, key=lambda c: -priority.get(c.qualified, 0))
        if self.sessions is not None:
            from llmkernel_gateway.affinity import pin_first

            ordered = pin_first(ctx, ordered, self.sessions)
        return ordered

    def __getattr__(self, name: str) -> Any:  # aclose() and the rest of the inner strategy
        return getattr(self.inner, name)


class GatewayRouting:
    """The gateway's kernel plugin for routing (registered by the gateway, never an
    entry point): the ``gateway`` strategy and the filter of disabled deployments."""

    __llmkernel_name__ = "gateway-routing"

    def __init__(self, overrides: Overrides, sessions: affinity.Sessions | None) -> None:
        self.overrides = overrides
        self.sessions = sessions

    @hookimpl
    def register_strategies(self, kernel: Kernel, registry: Any) -> None:
        def make(kernel: Kernel, settings: Mapping[str, Any]) -> GatewayStrategy:
            unknown = sorted(set(settings) - {"inner"})
            if unknown:
                raise ConfigError(
                    f"[routing.{STRATEGY}] is the gateway's own; it takes no {unknown[0]!r}"
                )
            inner = kernel.strategies.create(kernel, str(settings.get("inner", "priority")))
            return GatewayStrategy(inner, self.overrides, self.sessions)

        registry.add(STRATEGY, make)

    @hookimpl
    def filter_candidates(
        self, kernel: Kernel, ctx: RequestContext, candidates: list[Candidate]
    ) -> list[Drop] | None:
        disabled = self.overrides.disabled
        if not disabled:
            return None
        return [Drop(candidate=c, reason=DISABLED) for c in candidates if c.qualified in disabled]


def with_gateway_strategy(config: Config) -> Config:
    """``config`` routed through the ``gateway`` strategy around its own."""
    routing = config.routing
    if routing.strategy == STRATEGY:
        return config  # already (a config derived before)
    if STRATEGY in routing.settings:
        raise ConfigError(
            f"[routing.{STRATEGY}] in {config.source} is the gateway's own strategy: "
            "rename the table"
        )
    settings = {**routing.settings, STRATEGY: {"inner": routing.strategy}}
    return attrs.evolve(config, routing=attrs.evolve(routing, strategy=STRATEGY, settings=settings))


def configured_weight(config: Config, deployment: str) -> bool:
    """Whether ``[routing.weighted] weights`` of the config names ``deployment``."""
    weighted = config.routing.settings.get("weighted", {})
    weights = weighted.get("weights", {}) if isinstance(weighted, Mapping) else {}
    return isinstance(weights, Mapping) and deployment in weights
