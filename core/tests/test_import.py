"""``import llmkernel`` stays light: no provider SDK, sqlite or tiktoken."""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "sqlite3",
    "sqlite_utils",
    "tiktoken",
    "openai",
    "anthropic",
    "google",
    "boto3",
    "litellm",
    "aiohttp",
)


def modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line.split(".")[0] for line in out.splitlines()}


def test_import_llmkernel_is_light() -> None:
    loaded = modules_after("import llmkernel")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)
    assert "httpx" not in loaded and "stamina" not in loaded  # loaded on first use


def test_building_a_kernel_with_every_plugin_imports_no_heavy_module() -> None:
    loaded = modules_after("from llmkernel import Kernel\nKernel.from_config({})")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_building_a_kernel_does_not_import_asyncio() -> None:
    # asyncio (with ssl, concurrent.futures, subprocess) costs about half of `import
    # httpx`: it comes with the first call, not with the kernel
    loaded = modules_after("from llmkernel import Kernel\nKernel.from_config({}).close()")
    assert "asyncio" not in loaded and "concurrent" not in loaded


def test_the_first_sync_call_still_works_after_a_light_start() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from llmkernel import Kernel\n"
            "k = Kernel.from_config({})\n"
            "assert 'asyncio' not in sys.modules\n"
            "from llmkernel.testing.scripted import make_kernel\n"
            "k = make_kernel(['hi'])\n"
            "print(k.chat('a/m1', 'hello').text)\nk.close()",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "hi"
