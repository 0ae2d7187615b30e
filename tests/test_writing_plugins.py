"""The provider that docs/writing-plugins.md builds (Acme, on llmkernel-http's
``HTTPProvider``) passes the provider contract suite the same page writes for it:
its files are taken from the page and the suite run on them, in a fresh pytest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.test_docs import ROOT, blocks_of

PAGE = ROOT / "docs" / "writing-plugins.md"


def test_the_acme_provider_of_the_page_passes_the_contract_suite(tmp_path: Path) -> None:
    written = []
    for block in blocks_of(PAGE):
        target = block.target
        if target and target.endswith(".py") and "acme" in (target + block.code[:200]):
            path = tmp_path / target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.code, encoding="utf-8")
            written.append(target)
    assert "src/llmkernel_acme/provider.py" in written and "tests/test_contract.py" in written
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "src"), str(tmp_path)]),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_contract.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_the_acme_provider_is_under_100_lines() -> None:
    (provider,) = [b for b in blocks_of(PAGE) if b.target == "src/llmkernel_acme/provider.py"]
    assert len(provider.code.splitlines()) < 100
