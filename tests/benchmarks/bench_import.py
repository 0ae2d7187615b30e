"""Import and startup time against ``import httpx``, measured in the same run.

    uv run python tests/benchmarks/bench_import.py

Each figure is the median wall time of fresh interpreters running the statement,
minus the median of an empty interpreter, so only the import is counted.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

RUNS = 15
CASES = {
    "import httpx": "import httpx",
    "import llmkernel": "import llmkernel",
    "from llmkernel import Kernel": "from llmkernel import Kernel",
    "Kernel.from_config({}) (every installed plugin loaded)": (
        "from llmkernel import Kernel; Kernel.from_config({})"
    ),
}


def median_seconds(code: str) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def cli_help() -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "llmkernel.cli", "--help"], check=True, capture_output=True
        )
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    empty = median_seconds("pass")
    httpx = median_seconds(CASES["import httpx"]) - empty
    print(f"{'what':<58} {'ms':>7} {'x httpx':>8}")
    for name, code in CASES.items():
        took = median_seconds(code) - empty
        print(f"{name:<58} {took * 1000:7.1f} {took / httpx:8.2f}")
    print(f"{'llmkernel --help (whole process)':<58} {cli_help() * 1000:7.1f}")


if __name__ == "__main__":
    main()
