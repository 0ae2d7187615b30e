"""The python code blocks of README.md and docs/ run as tests, so the docs stay true.

Every fenced block opened with a line that is exactly three backticks and ``python``
in ``README.md`` and ``docs/**/*.md`` is one test, named ``<file>:<line>``. The
blocks of one file form a session, as in a doctest: a block runs after the blocks
before it in the same file, in one namespace (in an empty temporary directory with
no user config and no ``LLMKERNEL_*`` variables), so a later block may use names an
earlier one defined.

An HTML comment on the line just before the opening fence (invisible when the
Markdown is rendered) changes that:

- ``<!-- docs-test: skip REASON -->``: the block is not run (it needs a network, an
  API key, a server...); the test is reported as skipped with the reason.
- ``<!-- docs-test: file NAME -->`` before a block of any language: its text is
  written to ``NAME`` in the temporary directory before the python blocks after it
  run (a ``llmkernel.toml`` the next example loads).

Blocks may use top-level ``await``. See README.md ("Docs that run").
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(skip|file)\b\s*(.*?)\s*-->\s*$")


MODULE_PATH = re.compile(r"^#\s*((?:[\w.-]+/)*[\w-]+\.py)\s*$")


@attrs.frozen(kw_only=True)
class Block:
    path: Path
    line: int  # of the opening fence, from 1
    language: str
    code: str
    skip: str | None = None  # the reason
    file: str | None = None  # written to this name instead of run

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}"

    @property
    def target(self) -> str | None:
        """The file this block is written to: the marker's, else a python block's
        first line ``# src/pkg/module.py``."""
        if self.file is not None:
            return self.file
        first = self.code.split("\n", 1)[0]
        match = MODULE_PATH.match(first) if self.language == "python" else None
        return match.group(1) if match else None


def blocks_of(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file with their markers."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, language = opening.group(1), opening.group(2).lower()
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        marker = MARKER.match(lines[i - 1]) if i > 0 else None
        kind, arg = (marker.group(1), marker.group(2)) if marker else (None, "")
        if kind == "skip" and not arg:
            raise ValueError(f"{path}:{i}: <!-- docs-test: skip --> needs a reason")
        found.append(
            Block(
                path=path,
                line=i + 1,
                language=language,
                code="\n".join(lines[i + 1 : end]) + "\n",
                skip=arg if kind == "skip" else None,
                file=arg if kind == "file" else None,
            )
        )
        i = end + 1
    return found


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def python_blocks() -> Iterator[pytest.ParameterSet]:
    for path in markdown_files():
        for block in blocks_of(path):
            if block.language == "python" and block.file is None:
                yield pytest.param(block, id=block.id)


def module_name(target: str) -> str:
    """``src/llmkernel_acme/plugin.py`` -> ``llmkernel_acme.plugin``."""
    parts = target.removesuffix(".py").split("/")
    if parts[0] == "src":
        parts = parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def run_block(block: Block, where: Path, namespace: dict[str, object] | None = None) -> None:
    target = block.target
    if target is not None:  # a module of the example's package: it must import
        importlib.import_module(module_name(target))
        return
    code = compile(
        block.code, f"{block.id}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )
    if namespace is None:
        namespace = {"__name__": "__docs__"}
    result = eval(code, namespace)
    if inspect.iscoroutine(result):
        asyncio.run(result)


def shadow(page: list[Block], monkeypatch: pytest.MonkeyPatch) -> None:
    """A page's example package may share its name with an installed one (the docs
    of ``on_response`` write a ``llmkernel_ledger``): hide the installed one's
    modules for the test; monkeypatch puts them back."""
    packages = {
        module_name(b.target).split(".")[0] for b in page if b.target and b.target.endswith(".py")
    }
    for name in list(sys.modules):
        if name.split(".")[0] in packages:
            monkeypatch.delitem(sys.modules, name)


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for var in list(os.environ):
        if var.startswith("LLMKERNEL_"):
            monkeypatch.delenv(var)
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / "xdg" / var.lower()))  # no ledger in ~
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:  # the example's own modules
        module_file = getattr(sys.modules[name], "__file__", None) or ""
        if module_file.startswith(str(tmp_path)):
            del sys.modules[name]


@pytest.mark.parametrize("block", list(python_blocks()))
def test_doc_block_runs(
    block: Block,
    clean_env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if block.skip:
        pytest.skip(block.skip)
    import logging

    import structlog

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    page = blocks_of(block.path)
    shadow(page, monkeypatch)
    for other in page:  # every file of the page first: a module may import a later one
        if other.target is not None:
            path = clean_env / other.target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(other.code, encoding="utf-8")
    for other in page:  # regular packages: a namespace package loses to an installed one
        if other.target is not None and other.target.endswith(".py"):
            folder = (clean_env / other.target).parent
            while folder != clean_env and folder.name != "src":
                (folder / "__init__.py").touch()
                folder = folder.parent
    importlib.invalidate_caches()
    earlier = [b for b in page if b.line < block.line and not b.skip and b.language == "python"]
    try:
        shared: dict[str, object] = {"__name__": "__docs__"}
        for previous in earlier:
            run_block(previous, clean_env, shared)
        run_block(block, clean_env, shared)
    finally:
        structlog.reset_defaults()  # a block may configure logging
        root.handlers[:] = handlers
        root.setLevel(level)
    capsys.readouterr()


def test_markers_are_well_formed() -> None:
    """A typo in a marker would silently run a block meant to be skipped."""
    bad = []
    for path in markdown_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "docs-test" in line and not MARKER.match(line) and "`" not in line:
                bad.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not bad, "malformed docs-test markers:\n" + "\n".join(bad)


def test_the_collector_finds_blocks_and_markers(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n"
        "<!-- docs-test: file llmkernel.toml -->\n"
        "```toml\ndefault_model = 'mock/echo'\n```\n"
        "```python\nx = 1\n```\n"
        "<!-- docs-test: skip needs an OpenAI key -->\n"
        "```python\nraise SystemExit\n```\n"
        "```sh\nls\n```\n"
    )
    blocks = blocks_of(page)
    assert [(b.language, b.line, b.skip, b.file) for b in blocks] == [
        ("toml", 3, None, "llmkernel.toml"),
        ("python", 6, None, None),
        ("python", 10, "needs an OpenAI key", None),
        ("sh", 13, None, None),
    ]
    assert blocks[1].code == "x = 1\n"
