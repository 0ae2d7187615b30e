"""The ``http`` plugin entry point of llmkernel-http.

llmkernel-http is the library HTTP providers build on (:class:`~llmkernel_http.HTTPProvider`);
its entry point makes it visible in ``llmkernel plugins`` and lets config disable it like any
plugin. It implements no hook of its own: importing it must stay cheap (httpx and aiohttp load
with the first provider that uses them).
"""

from __future__ import annotations
