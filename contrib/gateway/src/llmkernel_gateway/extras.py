"""Request fields only some providers take, sent only where they mean something.

A client API has fields the kernel's request has no place for (Chat Completions'
``web_search_options``, the Messages API's ``top_k``, the Responses API's
``prompt_cache_key``). They travel as provider options (``ChatRequest.options``,
which each adapter merges into its own body), so they may only go to a model whose
every candidate (the deployments of its alias or group) is of a provider type that
takes them; an adapter would otherwise send a field its upstream refuses.

- a **required** field (it changes the answer: ``web_search_options``, ``audio``,
  ``top_k``) for a model with a candidate that does not take it is a 400 naming the
  field and the provider type;
- a **hint** (``prompt_cache_key``, ``parallel_tool_calls``, ``service_tier``) is
  dropped there: the answer is the same without it.

A field maps to the option(s) of each type that takes it (``top_k`` is Gemini's
``generationConfig.topK``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from llmkernel_gateway.wire import BadRequest

Convert = Callable[[Any], dict[str, Any]]


def same(name: str) -> Convert:
    """The option of the same name, value unchanged."""
    return lambda value: {name: value}


OPENAI_LIKE = ("openai", "azure")


@attrs.frozen(kw_only=True)
class Extra:
    """A field and, per provider type that takes it, how it becomes options."""

    name: str
    takers: Mapping[str, Convert]
    required: bool = True

    @classmethod
    def openai(cls, name: str, *, required: bool = True) -> Extra:
        """A field OpenAI's API (and Azure's) takes under the same name."""
        return cls(name=name, takers={t: same(name) for t in OPENAI_LIKE}, required=required)


def options_for(
    fields: Mapping[str, Any], extras: Iterable[Extra], provider_types: Iterable[str], model: str
) -> dict[str, Any]:
    """The options for ``fields`` (the request's values of ``extras``, by name) when
    the model's candidates are of ``provider_types``; raise :class:`BadRequest` for
    a required field one of them cannot take."""
    types = sorted(set(provider_types))
    options: dict[str, Any] = {}
    for extra in extras:
        value = fields.get(extra.name)
        if value is None:
            continue
        missing = [t for t in types if t not in extra.takers]
        converted = [extra.takers[t](value) for t in types if t in extra.takers]
        if not missing and any(c != converted[0] for c in converted):
            # one set of options goes to every candidate: they must agree on it
            missing = types
        if missing:
            if extra.required:
                takers = ", ".join(sorted(extra.takers))
                raise BadRequest(
                    extra.name,
                    f"{extra.name} is not supported by provider type {missing[0]!r} "
                    f"(model {model!r}); it is passed on only to {takers} deployments, "
                    "and to a group only when all of them take it the same way",
                )
            continue
        if converted:
            options.update(converted[0])
    return options


__all__ = ["OPENAI_LIKE", "Extra", "options_for", "same"]
