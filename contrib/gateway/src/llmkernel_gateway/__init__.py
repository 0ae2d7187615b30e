"""An OpenAI-compatible HTTP gateway over llmkernel: ``llmkernel serve``.

    from llmkernel import Config
    from llmkernel_gateway import Gateway

    app = Gateway(Config.load("llmkernel.toml"))   # an ASGI app for any ASGI server

Names load on first use, so the plugin entry point (``llmkernel_gateway.plugin``)
stays cheap to import for every ``llmkernel`` command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmkernel_gateway.app import Gateway, create_app


def __getattr__(name: str) -> Any:
    if name in ("Gateway", "create_app"):
        from llmkernel_gateway import app

        return getattr(app, name)
    raise AttributeError(f"module 'llmkernel_gateway' has no attribute {name!r}")


__all__ = ["Gateway", "create_app"]
