"""Import and startup time against ``import httpx``, measured in the same run.

    python tests/benchmarks/bench_import.py [--quick]

Each figure is the median wall time of fresh interpreters running the statement,
interleaved (one of each case per round), minus the median of an empty interpreter.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import median

CASES = {
    "empty interpreter": "pass",
    "import httpx": "import httpx",
    "import llmkernel": "import llmkernel",
    "Kernel.from_config() (every first-party plugin)": (
        "from llmkernel import Kernel; Kernel.from_config({}).close()"
    ),
    "import openai": "import openai",
    "import litellm": "import litellm",
}


def _time(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - started


# measured in the environment with LiteLLM (the others in the clean one)
OTHERS = {"import openai", "import litellm", "import httpx (in LiteLLM's environment)"}
SLOW = {"import litellm"}


def run(quick: bool, clean_python: str | None = None) -> dict[str, Any]:
    """``clean_python``: an interpreter whose environment has only llmkernel's packages
    (what ``pip install llmkernel...`` gives). In the benchmark environment LiteLLM's
    proxy extra installs click, rich and pygments, and ``import httpx`` then imports
    its command-line module with them (about 0.9 s here), which would flatter every
    ratio against it."""
    clean = clean_python or sys.executable
    cli = str(Path(clean).with_name("llmkernel"))
    cases = {**CASES, "import httpx (in LiteLLM's environment)": "import httpx"}
    argvs = {
        name: [sys.executable if name in OTHERS else clean, "-c", code]
        for name, code in cases.items()
    }
    argvs["llmkernel --help (whole process)"] = [cli, "--help"]
    plugins = subprocess.run(
        [
            clean,
            "-c",
            "from llmkernel import Kernel; k = Kernel.from_config({});"
            "print(len(k.plugins) if hasattr(k, 'plugins') else -1)",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    times: dict[str, list[float]] = {name: [] for name in argvs}
    for argv in argvs.values():
        _time(argv)  # warm the disk cache and the bytecode
    for round_ in range(5 if quick else 9):
        for name, argv in argvs.items():
            if name in SLOW and round_ >= (2 if quick else 3):
                continue
            try:
                times[name].append(_time(argv))
            except subprocess.CalledProcessError as exc:
                times[name].append(float("nan"))
                print(f"{name}: failed: {exc.stderr[-300:]!r}", file=sys.stderr)
    empty = median(times["empty interpreter"])
    httpx = median(times["import httpx"]) - empty
    out: dict[str, Any] = {"plugins_loaded": plugins, "clean_python": clean}
    for name, samples in times.items():
        if name == "empty interpreter":
            continue
        whole = name.endswith("(whole process)")
        took = median(samples) - (0 if whole else empty)
        out[name] = {"ms": took * 1000, "x_httpx": took / httpx, "whole_process": whole}
    out["empty interpreter"] = {"ms": empty * 1000}
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--clean-python", help="interpreter of an llmkernel-only environment")
    args = parser.parse_args()
    print(json.dumps(run(args.quick, args.clean_python), indent=1))
