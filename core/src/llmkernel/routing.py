"""Candidates: the provider/model pairs a request may be routed to."""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class Candidate:
    """One place a request can go: the provider instance ``provider`` (its name in
    config), its ``provider_type``, and the provider's ``model`` id."""

    provider: str
    model: str
    provider_type: str = ""

    @property
    def qualified(self) -> str:
        return f"{self.provider}/{self.model}"
