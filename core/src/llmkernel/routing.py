"""Candidates: the provider/model pairs a request may be routed to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs


@attrs.frozen(kw_only=True, cache_hash=True)
class Candidate:
    """One place a request can go: the provider instance ``provider`` (its name in
    config), its ``provider_type``, and the provider's ``model`` id. ``tags`` are
    the extra keys of a ``[models]`` table target (``weight``, ``tier``...); they do
    not take part in equality or hashing."""

    provider: str
    model: str
    provider_type: str = ""
    tags: Mapping[str, Any] = attrs.field(factory=dict, eq=False, hash=False)
    #: ``provider/model``, made once (plugins read it several times a call)
    qualified: str = attrs.field(init=False, eq=False, hash=False, repr=False)

    @qualified.default
    def _qualified(self) -> str:
        return f"{self.provider}/{self.model}"


__all__ = ["Candidate"]
