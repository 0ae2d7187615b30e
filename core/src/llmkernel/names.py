"""The model and deployment names a kernel's configuration defines: what plugins may
key state by, or use as a metric label, when a name comes from a client.

A client chooses the model string of every call, so anything kept per model name
(statistics, breakers, metric series, health entries) must be bounded by what the
operator configured, never by what was asked::

    from llmkernel.names import known_names

    names = known_names(kernel)
    names.deployment("openai", "gpt-4o-mini")   # "openai/gpt-4o-mini", or None
    names.model("fast")                         # "fast" (an alias), or None

Known are the aliases and groups of ``[models]``, their ``provider/model`` targets,
and every ``provider/model`` a provider instance declares without a network call
(``Provider.declared_models()``: its ``models`` setting, or the plugin's data).
Everything else is the caller's to put under a catch-all (``other``).
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel

__all__ = ["KnownNames", "known_names"]


class KnownNames:
    """The known names of one kernel; refreshed when a provider instance appears
    (an implicit ``openai/...`` creates one on first use)."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = weakref.ref(kernel)
        self._lock = threading.Lock()
        self.aliases: frozenset[str] = frozenset(kernel.config.models) | frozenset(
            kernel.config.experiments
        )
        self.providers: frozenset[str] = frozenset()
        self.deployments: frozenset[str] = frozenset()
        self.refresh()

    def refresh(self) -> None:
        """Read the providers again (their declared models)."""
        kernel = self._kernel()
        if kernel is None:
            return
        with self._lock:
            providers = kernel.providers()
            deployments = {t.target for ts in kernel.config.model_targets.values() for t in ts}
            for name, provider in providers.items():
                try:
                    declared = provider.declared_models()
                except Exception:  # a provider that cannot say declares nothing
                    declared = []
                deployments.update(f"{name}/{model}" for model in declared)
            self.providers = frozenset(providers) | frozenset(kernel.config.providers)
            self.deployments = frozenset(deployments)

    def provider(self, name: str) -> str | None:
        """``name`` if it is a provider instance of this kernel."""
        if name in self.providers:
            return name
        self._maybe_refresh(name)
        return name if name in self.providers else None

    def deployment(self, provider: str, model: str) -> str | None:
        """``provider/model`` when the config or the provider defines it, else ``None``."""
        qualified = f"{provider}/{model}"
        if qualified in self.deployments:
            return qualified
        if provider not in self.providers and self._maybe_refresh(provider):
            return qualified if qualified in self.deployments else None
        return None

    def model(self, name: str) -> str | None:
        """A model string as a caller sent it: an alias or group, or a known
        ``provider/model``; else ``None``."""
        if name in self.aliases or name in self.deployments:
            return name
        provider, _, model = name.partition("/")
        if provider and model:
            return self.deployment(provider, model)
        return None

    def _maybe_refresh(self, provider: str) -> bool:
        """Refresh when ``provider`` has become an instance of the kernel since."""
        kernel = self._kernel()
        if kernel is None or provider not in kernel.providers():
            return False
        self.refresh()
        return True


_known: weakref.WeakKeyDictionary[Kernel, KnownNames] = weakref.WeakKeyDictionary()
_known_lock = threading.Lock()


def known_names(kernel: Kernel) -> KnownNames:
    """The :class:`KnownNames` of ``kernel``, made on first use."""
    names = _known.get(kernel)
    if names is None:
        with _known_lock:
            names = _known.get(kernel)
            if names is None:
                names = _known[kernel] = KnownNames(kernel)
    return names
