"""Sessions: each package tested alone (core plus that package, so an undeclared
dependency fails), everything together, lint, typing.

    uvx nox -l                 # list sessions
    uvx nox -s "package_tests(package='openai')"
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typing"]

ROOT = Path(__file__).parent
PLUGINS = sorted(p.parent.name for p in ROOT.glob("plugins/*/pyproject.toml"))
CONTRIB = sorted(p.parent.name for p in ROOT.glob("contrib/*/pyproject.toml"))
PACKAGES = ["core", *PLUGINS, *CONTRIB]
TEST_DEPS = ["pytest>=8", "pytest-asyncio>=0.24"]


def _path(package: str) -> str:
    if package == "core":
        return "core"
    return f"plugins/{package}" if package in PLUGINS else f"contrib/{package}"


@nox.session(python="3.11")
@nox.parametrize("package", PACKAGES)
def package_tests(session: nox.Session, package: str) -> None:
    """One package alone: a plain (non-editable) install of core and that package."""
    paths = ["./core"] if package == "core" else ["./core", f"./{_path(package)}"]
    session.install(*paths, *TEST_DEPS)
    session.run("pytest", "-q", f"{_path(package)}/tests", *session.posargs)


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """Every package installed together, every test."""
    session.install("./core", *[f"./{_path(p)}" for p in PACKAGES if p != "core"], *TEST_DEPS)
    session.run("pytest", "-q", *session.posargs)


@nox.session(python="3.11")
def lowest(session: nox.Session) -> None:
    """Core against the lowest versions of its dependencies that it allows."""
    session.install("--resolution", "lowest-direct", "./core", "./plugins/mock", *TEST_DEPS)
    session.run("pytest", "-q", "core/tests", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.8")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def typing(session: nox.Session) -> None:
    """mypy --strict on every package's src/."""
    session.install(
        "mypy>=1.13", "./core", *[f"./{_path(p)}" for p in PACKAGES if p != "core"], *TEST_DEPS
    )
    for package in PACKAGES:
        session.run("mypy", "--strict", f"{_path(package)}/src")


@nox.session(python="3.11")
def benchmarks(session: nox.Session) -> None:
    """Speed against baselines in the same run; see docs/performance.md."""
    session.install("./core", *[f"./{_path(p)}" for p in PACKAGES if p != "core"])
    session.run("python", "tests/benchmarks/bench_import.py")
    session.run("python", "tests/benchmarks/bench_overhead.py", *session.posargs)
