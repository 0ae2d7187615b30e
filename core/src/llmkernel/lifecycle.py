"""One owner of a kernel's lifecycle: what runs when it closes, when the process
exits without closing it, and in a child made by ``os.fork``.

Every kernel has a :class:`Lifecycle` (``kernel.lifecycle``); plugins register with
it in ``configure`` (``kernel.lifecycle.add_closer``, ``.on_exit``, ``.on_fork``)
and providers through their ``ProviderConfig.lifecycle``. This module alone
registers with :mod:`atexit` and :func:`os.register_at_fork`, once, for every kernel
of the process.

At interpreter exit (``atexit``: after the main thread and every non-daemon thread
ended; daemon threads still run) each kernel that was not closed runs its exit hooks,
newest first; a hook must be sync and must not need an executor of
``concurrent.futures`` (those are shut down before ``atexit`` runs). In a forked
child each kernel's fork hooks run, oldest first, before the child continues.
"""

from __future__ import annotations

import atexit
import os
import weakref
from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["Lifecycle"]

Hook = Callable[[], Any]


@attrs.define(eq=False, kw_only=True)
class Lifecycle:
    """Closers (run by ``Kernel.aclose``), exit hooks and fork hooks of one kernel."""

    closers: list[Hook] = attrs.field(factory=list)
    exit_hooks: list[Hook] = attrs.field(factory=list)
    fork_hooks: list[Hook] = attrs.field(factory=list)
    #: set by ``Kernel.aclose``: a closed kernel runs no exit hook
    closed: bool = False
    #: lifecycles run after this one's own hooks (each config a kernel had)
    children: list[Lifecycle] = attrs.field(factory=list)
    #: whether interpreter exit and fork reach it directly (else through a parent)
    top: bool = True

    def __attrs_post_init__(self) -> None:
        if self.top:
            _LIVE.add(self)

    def add_closer(self, closer: Hook) -> None:
        """Run ``closer()`` (sync, or returning an awaitable) when the kernel closes."""
        self.closers.append(closer)

    def on_exit(self, hook: Hook) -> None:
        """Run ``hook()`` at interpreter exit if the kernel was not closed by then."""
        self.exit_hooks.append(hook)

    def on_fork(self, hook: Hook) -> None:
        """Run ``hook()`` in a child process made by ``os.fork``."""
        self.fork_hooks.append(hook)

    def run_exit_hooks(self) -> None:
        """Its children's exit hooks (the newest child first), then its own, newest
        first; once. A kernel's own (the sync portal's stop) run last, after its
        plugins' and providers' (which may still use the portal's loop)."""
        if self.closed:
            return
        self.closed = True
        for child in reversed(self.children):
            child.run_exit_hooks()
        _run(reversed(self.exit_hooks), "exit")

    def run_fork_hooks(self) -> None:
        _run(list(self.fork_hooks), "fork")
        for child in list(self.children):
            child.run_fork_hooks()


def _run(hooks: Any, when: str) -> None:
    for hook in list(hooks):
        try:
            hook()
        except Exception as exc:  # one failing hook must not stop the others
            from llmkernel._logging import log

            log.warning(
                "llmkernel.lifecycle.hook_failed",
                when=when,
                hook=getattr(hook, "__qualname__", repr(hook)),
                error=f"{type(exc).__name__}: {exc}",
            )


_LIVE: weakref.WeakSet[Lifecycle] = weakref.WeakSet()


def _at_exit() -> None:
    for lifecycle in list(_LIVE):
        lifecycle.run_exit_hooks()


def _after_fork_in_child() -> None:
    for lifecycle in list(_LIVE):
        lifecycle.run_fork_hooks()


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
