"""One gateway-like process for the fleet tests: a kernel with the ratelimit and
redis plugins (its own state dirs), firing N concurrent calls for one key once a
start file appears, printing what was admitted as JSON."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import llmkernel_ratelimit.plugin as ratelimit
import llmkernel_redis.plugin as redis_plugin
from llmkernel import Kernel
from llmkernel.errors import RefusedError
from llmkernel.testing.scripted import ScriptedPlugin


async def main(config_path: str, calls: int, start: str) -> None:
    config = json.loads(Path(config_path).read_text())
    kernel = Kernel.from_config(
        config, plugins=[ScriptedPlugin(), ratelimit, redis_plugin], entry_points=False
    )
    async with kernel:
        deadline = time.monotonic() + 30
        while not os.path.exists(start) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

        async def one() -> str:
            try:
                response = await kernel.achat(
                    "a/m1", "hi", metadata={"key": "team-a"}, max_tokens=20
                )
            except RefusedError as exc:
                return f"refused:{exc.kind}"
            except Exception as exc:  # anything else is a failure of the test
                return f"error:{type(exc).__name__}:{exc}"
            usage = response.usage
            return f"ok:{usage.input_tokens + usage.output_tokens}"

        results = await asyncio.gather(*(one() for _ in range(calls)))
        stats = kernel.stats()
    print(json.dumps({"results": results, "redis": stats["redis"]}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
