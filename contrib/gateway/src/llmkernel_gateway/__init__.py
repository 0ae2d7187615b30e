"""An OpenAI-compatible HTTP gateway over llmkernel: ``llmkernel serve``.

from llmkernel import Config
from llmkernel_gateway import Gateway

app = Gateway(Config.load("llmkernel.toml"))   # an ASGI app for any server
"""

from __future__ import annotations

from llmkernel_gateway.app import Gateway, create_app

__all__ = ["Gateway", "create_app"]
