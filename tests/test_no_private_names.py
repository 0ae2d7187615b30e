"""Issue 27 point 4: no private name of another library, no ``__class__`` swap, no
process-lifecycle registry outside the kernel's, anywhere in the repository's
``src/`` trees.

Each pattern below is searched in every ``src/**/*.py`` of the repository (core,
plugins, contrib); a hit fails unless the allow-list names its file and pattern
with a reason. An allow-list entry that no longer hits is fine (the code it excused
is gone), so the list only ever shrinks."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PATTERNS: dict[str, str] = {
    "asyncio private": r"\basyncio\._\w",
    "_signal (CPython's private module)": r"\b(?:import|from)\s+_signal\b",
    "threading._register_atexit": r"\b_register_atexit\b",
    "httpx.Response internals (._content)": r"\._content\b",
    "__class__ swap": r"\.__class__\s*=(?!=)",
    "bound method's __self__": r"\.__self__\b",
    "aiohttp's private _close": r"(?<!\bself)\._close\b|[\"']_close[\"']",
    "a library's private module or attribute": (
        r"\b(?:httpx|httpcore|aiohttp|uvicorn|redis|yarl|structlog|stamina|pluggy)"
        r"(?:\.[a-z]\w*)*\._[a-z]\w*"
    ),
    "atexit / fork registry (the kernel's lifecycle owns them)": (
        r"\batexit\.register\b|\bregister_at_fork\b"
    ),
}

#: (path relative to the repository, pattern name): why it is allowed
ALLOWED: dict[tuple[str, str], str] = {
    # the one owner of process lifecycle: every kernel's exit and fork hooks run from
    # its single registration (docs: llmkernel.lifecycle)
    (
        "core/src/llmkernel/lifecycle.py",
        "atexit / fork registry (the kernel's lifecycle owns them)",
    ): "the kernel's lifecycle itself",
}


def sources() -> list[Path]:
    found = []
    for tree in ("core", "plugins", "contrib"):
        for path in sorted((ROOT / tree).glob("**/src/**/*.py")):
            if ".venv" not in path.parts and "site-packages" not in path.parts:
                found.append(path)
    return found


def hits() -> list[tuple[str, str, int, str]]:
    compiled = {name: re.compile(pattern) for name, pattern in PATTERNS.items()}
    found = []
    for path in sources():
        where = path.relative_to(ROOT).as_posix()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]  # a comment may name what is forbidden
            for name, pattern in compiled.items():
                if pattern.search(code):
                    found.append((where, name, number, line.strip()))
    return found


def test_the_patterns_find_what_they_are_for() -> None:
    compiled = {name: re.compile(pattern) for name, pattern in PATTERNS.items()}
    samples = {
        "asyncio private": "_running_loop = asyncio._get_running_loop",
        "_signal (CPython's private module)": "    import _signal",
        "threading._register_atexit": 'register = getattr(threading, "_register_atexit", None)',
        "httpx.Response internals (._content)": "response._content = body",
        "__class__ swap": "cycle.__class__ = CoalescingCycle",
        "bound method's __self__": "protocol = send.__self__",
        "aiohttp's private _close": 'close = getattr(connector, "_close", None)',
        "a library's private module or attribute": "from httpx._models import Response",
        "atexit / fork registry (the kernel's lifecycle owns them)": "@atexit.register",
    }
    for name, sample in samples.items():
        assert compiled[name].search(sample), name
    innocent = [
        "self._close()",  # a class's own method
        "if cycle.__class__ == Other:",
        "asyncio.get_running_loop()",
        "self._content_type = x",
    ]
    for line in innocent:
        assert not [n for n, p in compiled.items() if p.search(line)], line
    assert len(sources()) > 100  # the whole repository's src trees are searched


def test_no_private_names_of_other_libraries_in_any_src_tree() -> None:
    refused = [
        f"{where}:{number}: {name}: {line}"
        for where, name, number, line in hits()
        if (where, name) not in ALLOWED
    ]
    assert not refused, "\n".join(refused)
