"""The floor a Python gateway can reach here: a minimal pass-through proxy.

    python contrib/gateway/benchmarks/passthrough.py PORT UPSTREAM_URL

A raw ASGI app on uvicorn (uvloop, httptools) that forwards each request body to
the upstream with one shared aiohttp session and returns its answer: no keys, no
parsing, no kernel. ``bench_gateway.py`` measures it beside the gateway in the same
run, so the gateway's share of this floor is comparable across machines and loads.
"""

from __future__ import annotations

import sys
from typing import Any

import aiohttp
import uvicorn

UPSTREAM = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:8000"
_session: aiohttp.ClientSession | None = None


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _session
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1024))
                await send({"type": "lifespan.startup.complete"})
            else:
                if _session is not None:
                    await _session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    assert _session is not None
    async with _session.post(
        UPSTREAM + scope["path"], data=body, headers={"content-type": "application/json"}
    ) as response:
        payload = await response.read()
        kind = response.headers.get("content-type", "application/json").encode()
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": [(b"content-type", kind)],
        }
    )
    await send({"type": "http.response.body", "body": payload})


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )
