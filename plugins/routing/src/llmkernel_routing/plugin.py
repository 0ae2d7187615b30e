"""llmkernel hooks of the routing machinery: filters, the breaker gate, statistics
from the end hooks, ``collect_stats`` and the ``llmkernel stats`` command.

Cheap to import: the machinery is imported on first use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from llmkernel import hookimpl

if TYPE_CHECKING:
    from llmkernel.cli_registry import CommandRegistry

NAME = "routing"
_routing_for: Any = None  # llmkernel_routing.state.routing_for, imported on first use


def _routing(kernel: Any) -> Any:
    global _routing_for
    if _routing_for is None:
        from llmkernel_routing.state import routing_for

        _routing_for = routing_for
    return _routing_for(kernel)


@hookimpl
def configure(kernel: Any, config: Any) -> None:
    from llmkernel.options import parse_options
    from llmkernel_routing.settings import RoutingSettings
    from llmkernel_routing.state import routing_for

    where = f"[plugin.{NAME}] in {getattr(config, 'source', None) or 'config'}"
    settings = parse_options(RoutingSettings, config.plugin_settings(NAME), where=where)
    routing = routing_for(kernel, settings)
    if config.redis and settings.shared and routing.fleet is None:
        from llmkernel_routing.fleet import fleet_for

        routing.fleet = fleet_for(kernel)


@hookimpl
def filter_candidates(kernel: Any, ctx: Any, candidates: Iterable[Any]) -> list[Any] | None:
    routing = _routing(kernel)
    reasons = routing.drop_reasons(ctx, candidates)
    if not reasons:
        return None
    from llmkernel.context import Drop
    from llmkernel_routing.gate import unavailable

    return [
        Drop(candidate=c, reason=reason, by=NAME, error=unavailable(routing, c, reason))
        for c, reason in reasons
    ]


@hookimpl
def provide_gate(kernel: Any) -> Any:
    from llmkernel_routing.gate import RoutingGate
    from llmkernel_routing.state import routing_for

    return RoutingGate(routing_for(kernel), kernel)


@hookimpl
def on_attempt_end(kernel: Any, ctx: Any, attempt: Any, outcome: Any) -> None:
    error = outcome.error
    usage = outcome.usage
    _routing(kernel).attempt_ended(
        attempt.candidate,
        status=outcome.status,
        stream=bool(attempt.stream),
        kind=str(getattr(error, "kind", "") or type(error).__name__) if error is not None else "",
        message=str(error) if error is not None else "",
        latency=outcome.latency,
        first_event_latency=outcome.first_event_latency,
        input_tokens=usage.input_tokens if usage is not None else 0,
        output_tokens=usage.output_tokens if usage is not None else 0,
        cost=outcome.cost,
    )


@hookimpl
def on_request_end(kernel: Any, ctx: Any, outcome: Any) -> None:
    error = outcome.error
    attempts = getattr(ctx, "attempts", None) or ()
    if not isinstance(attempts, (list, tuple)):
        attempts = list(attempts)
    first = attempts[0].candidate if attempts else None
    _routing(kernel).calls.record(
        status=outcome.status,
        kind=str(getattr(error, "kind", "") or type(error).__name__) if error is not None else "",
        cached=bool(outcome.cached),
        attempts=len(attempts),
        fell_back=first is not None
        and outcome.candidate is not None
        and outcome.status == "ok"
        and outcome.candidate != first,
    )


@hookimpl
def collect_stats(kernel: Any) -> Mapping[str, Any]:
    from llmkernel_routing.state import routing_for

    return routing_for(kernel).snapshot()


@hookimpl
def register_commands(registry: CommandRegistry) -> None:
    from llmkernel_routing.cli import add_arguments, run

    registry.add(
        "stats",
        help="per-deployment statistics (optionally after sending a batch of requests)",
        arguments=add_arguments,
        run=run,
    )
