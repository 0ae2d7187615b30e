"""Project-wide contracts: every hook documented and tested, every package well formed."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from llmkernel import hookspecs

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(
    [
        ROOT / "core",
        *(p.parent for p in ROOT.glob("plugins/*/pyproject.toml")),
        *(p.parent for p in ROOT.glob("contrib/*/pyproject.toml")),
    ]
)
HOOKS = sorted(
    name
    for name in dir(hookspecs)
    if hasattr(getattr(hookspecs, name), f"{hookspecs.PROJECT}_spec")
)


def test_the_hooks_are_found() -> None:
    assert {"provide_chat", "select_provider", "on_response", "price_model"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_docstring_a_docs_page_and_a_test(hook: str) -> None:
    spec = getattr(hookspecs, hook)
    doc = spec.__doc__ or ""
    firstresult = getattr(spec, f"{hookspecs.PROJECT}_spec")["firstresult"]
    assert ("(firstresult)" in doc) == firstresult, f"{hook}: the docstring must say firstresult"
    assert ":return:" in doc, f"{hook}: the docstring must say what it returns"
    page = ROOT / "docs" / "hooks" / f"{hook}.md"
    assert page.is_file(), f"{hook} has no page at {page.relative_to(ROOT)}"
    assert "hookimpl" in page.read_text(), f"{page.name} needs an example implementation"
    pattern = re.compile(rf"^(async )?def test_hook_{hook}\b", re.M)
    tested = any(pattern.search(p.read_text()) for p in (ROOT / "core" / "tests").glob("*.py"))
    assert tested, f"{hook} has no test named test_hook_{hook} in core/tests"


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_every_package_is_a_plain_pep621_project(package: Path) -> None:
    meta = tomllib.loads((package / "pyproject.toml").read_text())
    project = meta["project"]
    assert project["name"].startswith("llmkernel")
    assert project["version"] and project["requires-python"].startswith(">=3.11")
    assert (package / "README.md").is_file()
    assert (package / "tests").is_dir() and list((package / "tests").glob("test_*.py"))
    src = list((package / "src").iterdir())
    assert len(src) == 1 and (src[0] / "py.typed").is_file() and (src[0] / "__init__.py").is_file()
    if package.name != "core":
        eps = project["entry-points"]["llmkernel.plugins"]
        assert len(eps) == 1, "one entry point per plugin package"
        assert "llmkernel" in project["dependencies"][0]


def test_entry_point_names_are_unique() -> None:
    names: dict[str, str] = {}
    for package in PACKAGES:
        meta = tomllib.loads((package / "pyproject.toml").read_text())
        for name in meta["project"].get("entry-points", {}).get("llmkernel.plugins", {}):
            assert name not in names, f"{name} is claimed by {names.get(name)} and {package}"
            names[name] = package.name
