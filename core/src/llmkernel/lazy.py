"""Names a package exports, imported on first use (PEP 562).

A plugin's entry point is imported when every kernel starts, so its package's
``__init__`` must be cheap. Instead of importing its modules, it names them::

    # src/llmkernel_acme/__init__.py
    from typing import TYPE_CHECKING

    from llmkernel.lazy import lazy_exports

    __getattr__, __dir__ = lazy_exports(__name__, {
        "llmkernel_acme.provider": ["AcmeProvider"],
        "llmkernel_acme.settings": ["AcmeSettings"],
    })
    if TYPE_CHECKING:  # for type checkers and editors
        from llmkernel_acme.provider import AcmeProvider
        from llmkernel_acme.settings import AcmeSettings
    __all__ = ["AcmeProvider", "AcmeSettings"]
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, modules: Mapping[str, Iterable[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``: each name in ``modules``
    (module name → the names it provides) is imported from its module the first
    time it is asked for, then kept in the package's namespace."""
    where = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*where, *vars(sys.modules[package])})

    return __getattr__, __dir__
