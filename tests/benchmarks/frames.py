"""How deep one call is: the Python frames between ``Kernel.achat`` (or the sync
``Kernel.chat``) and the moment the request's bytes are written to the socket.

    python tests/benchmarks/frames.py

Runs one chat through the OpenAI provider against the benchmark's fake upstream,
catches the ``transport.write`` of the kernel's own connections with a profile hook,
and prints the frames from the kernel's entry to there, innermost last, with the
count on the provider's side (from ``HTTPProvider.chat``).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from common import minimal_kernel, upstream

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    with upstream() as base:
        results: dict[str, list[str]] = {}
        for face in ("achat", "chat"):
            kernel = minimal_kernel(base)  # one per face: a kernel keeps its first loop
            stacks: list[list[str]] = []

            def profile(frame: FrameType, event: str, arg: Any, stacks: Any = stacks) -> None:
                # the transport's write (a Python method of asyncio's, a C one of uvloop's)
                if stacks or event not in ("call", "c_call"):
                    return
                if event == "call":
                    if frame.f_code.co_name != "write" or frame.f_back is None:
                        return
                    frame = frame.f_back
                elif getattr(arg, "__name__", "") != "write":
                    return
                code = frame.f_code
                if (
                    code.co_name not in ("exchange", "_send")
                    or "connections" not in code.co_filename
                ):
                    return
                names = []
                current: FrameType | None = frame
                while current is not None:
                    where = Path(current.f_code.co_filename)
                    shown = where.relative_to(ROOT) if where.is_relative_to(ROOT) else where
                    names.append(f"{shown}:{current.f_code.co_qualname}")
                    current = current.f_back
                stacks.append(names[::-1])

            async def twice(kernel: Any = kernel, profile: Any = profile) -> None:
                await kernel.achat(model="bench/gpt-4o-mini", messages="warm up")
                sys.setprofile(profile)
                try:
                    await kernel.achat(model="bench/gpt-4o-mini", messages="hi")
                finally:
                    sys.setprofile(None)
                await kernel.aclose()

            if face == "achat":
                asyncio.run(twice())
            else:
                kernel.chat(model="bench/gpt-4o-mini", messages="warm up")
                sys.setprofile(profile)
                try:
                    kernel.chat(model="bench/gpt-4o-mini", messages="hi")
                finally:
                    sys.setprofile(None)
                kernel.close()
            results[face] = stacks[0]
    for face, stack in results.items():
        start = next(i for i, name in enumerate(stack) if name.endswith(f"Kernel.{face}"))
        ours = stack[start:]
        provider = next(i for i, name in enumerate(ours) if name.endswith("HTTPProvider.chat"))
        print(f"Kernel.{face} to the socket write: {len(ours)} frames")
        for name in ours:
            print("   ", name)
        print(f"  of which the provider's side (HTTPProvider.chat on): {len(ours) - provider}")


if __name__ == "__main__":
    main()
