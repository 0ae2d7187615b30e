"""An OpenAI-compatible HTTP gateway over llmkernel: ``llmkernel serve``.

    from llmkernel import Config
    from llmkernel_gateway import Gateway

    app = Gateway(Config.load("llmkernel.toml"))   # an ASGI app for any ASGI server

Names load on first use, so the plugin entry point (``llmkernel_gateway.plugin``)
stays cheap to import for every ``llmkernel`` command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkernel.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {"llmkernel_gateway.app": ["Gateway", "create_app"]})

if TYPE_CHECKING:
    from llmkernel_gateway.app import Gateway, create_app

__all__ = ["Gateway", "create_app"]
