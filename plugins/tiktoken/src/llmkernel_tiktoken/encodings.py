"""Which encoding a model uses, and loading encodings without the network.

tiktoken downloads an encoding's file on first use; here (and on many servers) it
cannot. :class:`Encodings` never lets it try: it loads a file only when one is on
disk, in the configured directory or tiktoken's own cache (``TIKTOKEN_CACHE_DIR``,
then ``DATA_GYM_CACHE_DIR``), named ``<encoding>.tiktoken`` or by tiktoken's cache
name (the SHA-1 of the download URL), and checks its SHA-256 against tiktoken's.
Encodings can also be registered directly (``tiktoken.Encoding`` objects).
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import types
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import tiktoken

__all__ = ["BLOBS", "Encodings", "encoding_name"]

# tiktoken_ext.openai_public: the URL and SHA-256 of each encoding file.
_BASE = "https://openaipublic.blob.core.windows.net/encodings/"
BLOBS: Mapping[str, tuple[str, str]] = {
    "o200k_base": (
        _BASE + "o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    "cl100k_base": (
        _BASE + "cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "p50k_base": (
        _BASE + "p50k_base.tiktoken",
        "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069",
    ),
    "r50k_base": (
        _BASE + "r50k_base.tiktoken",
        "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
    ),
}
_FILE_OF = {"o200k_harmony": "o200k_base"}  # harmony is o200k_base plus special tokens

# Model id prefixes, most specific first (tiktoken.model's table as of 0.14, plus the
# newer families the same way: every OpenAI model since gpt-4o uses o200k_base).
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("gpt-oss", "o200k_harmony"),
    ("gpt-5", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4o", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("codex-", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("gpt-35", "cl100k_base"),
    ("text-embedding-3", "cl100k_base"),
    ("text-embedding-ada-002", "cl100k_base"),
    ("davinci-002", "cl100k_base"),
    ("babbage-002", "cl100k_base"),
)


def encoding_name(model: str) -> str | None:
    """The tiktoken encoding of an OpenAI model id (``ft:`` prefixes and
    ``provider/`` paths allowed), or ``None`` when it is not an OpenAI model."""
    name = model.rsplit("/", 1)[-1].lower()
    if name.startswith("ft:"):
        name = name[3:]
    for prefix, encoding in _PREFIXES:
        if name.startswith(prefix):
            return encoding
    return None


def _read_ranks(path: Path, expected: str | None) -> dict[bytes, int]:
    data = path.read_bytes()
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise ValueError(f"{path} is not the expected encoding file (SHA-256 mismatch)")
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


class Encodings:
    """Encodings by name: registered ones, else files found on disk, else ``None``."""

    def __init__(self, directory: str | None = None, env: Mapping[str, str] | None = None) -> None:
        self.directory = directory
        self._env = os.environ if env is None else env
        self._loaded: dict[str, tiktoken.Encoding | None] = {}
        self._lock = threading.Lock()

    def register(self, encoding: tiktoken.Encoding, name: str | None = None) -> None:
        """Use ``encoding`` for ``name`` (default: its own name)."""
        with self._lock:
            self._loaded[name or encoding.name] = encoding

    def directories(self) -> list[Path]:
        dirs = [
            self.directory,
            self._env.get("TIKTOKEN_CACHE_DIR"),
            self._env.get("DATA_GYM_CACHE_DIR"),
        ]
        return [Path(os.path.expanduser(d)) for d in dirs if d]

    def find_file(self, name: str) -> Path | None:
        """Where the file of encoding ``name`` is on disk, or ``None``."""
        file_name = _FILE_OF.get(name, name)
        blob = BLOBS.get(file_name)
        for directory in self.directories():
            candidates = [directory / f"{file_name}.tiktoken"]
            if blob is not None:
                candidates.append(directory / hashlib.sha1(blob[0].encode()).hexdigest())
            for path in candidates:
                if path.is_file():
                    return path
        return None

    def get(self, name: str) -> tiktoken.Encoding | None:
        """The encoding ``name``, or ``None`` when it is neither registered nor on disk."""
        if name in self._loaded:
            return self._loaded[name]
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = self._load(name)
            return self._loaded[name]

    def _load(self, name: str) -> tiktoken.Encoding | None:
        file_name = _FILE_OF.get(name, name)
        path = self.find_file(name)
        if path is None or file_name not in BLOBS:
            return None
        import tiktoken
        import tiktoken_ext.openai_public as public  # type: ignore[import-untyped]

        try:
            ranks = _read_ranks(path, BLOBS[file_name][1])
        except (OSError, ValueError) as exc:
            from llmkernel import log

            log.warning("llmkernel_tiktoken.encoding_unreadable", path=str(path), error=str(exc))
            return None
        constructor = getattr(public, name)
        # The constructor, with tiktoken's loader swapped for the ranks read here, so
        # the pattern and special tokens are tiktoken's own and nothing is downloaded.
        scope: dict[str, Any] = dict(constructor.__globals__)
        scope["load_tiktoken_bpe"] = lambda *args, **kwargs: ranks
        if name != file_name:
            scope[file_name] = types.FunctionType(getattr(public, file_name).__code__, scope)
        spec = types.FunctionType(constructor.__code__, scope)()
        return tiktoken.Encoding(
            name=spec["name"],
            pat_str=spec["pat_str"],
            mergeable_ranks=spec["mergeable_ranks"],
            special_tokens=spec["special_tokens"],
            explicit_n_vocab=spec.get("explicit_n_vocab"),
        )
