"""The budgets plugin's own hook, added to every kernel that loads the plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel.hookspecs import hookspec

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel
    from llmkernel_budgets.store import Alert

__all__ = ["on_budget_alert"]


@hookspec
def on_budget_alert(kernel: Kernel, alert: Alert) -> None:
    """Called once per budget threshold crossed per period, across processes.

    ``alert`` has ``limit``, ``counter``, ``period``, ``threshold`` (``Decimal``,
    ``0.8`` for 80%), ``spent`` and ``amount``. Runs on the ledger's writer thread
    after the spend is committed: keep it quick; exceptions are logged and ignored.

    :param kernel: the kernel.
    :param alert: the threshold crossed.
    :return: ignored.
    """
