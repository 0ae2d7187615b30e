"""The status page's login sessions: a random id in the cookie, the key's name on the
server, never the key.

A session lives ``session_ttl`` seconds. With one worker the sessions are in its
memory; with ``llmkernel serve --workers N`` they are small files (0600) in the
workers' private run directory, so a login on one worker opens the page on every
worker. Either way they are bounded (``MAX_SESSIONS``: the oldest go first) and end
with the server. Only the SHA-256 of an id is stored, so a file's name gives no way
in.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from pathlib import Path

__all__ = ["MAX_SESSIONS", "Sessions"]

MAX_SESSIONS = 1000


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class Sessions:
    """Login sessions: :meth:`create` for a key's name, :meth:`lookup`, :meth:`end`."""

    def __init__(self, ttl: float, directory: str | None = None) -> None:
        self.ttl = ttl
        self._memory: dict[str, tuple[str, float]] = {}
        self._directory = Path(directory, "sessions") if directory else None

    def create(self, key_name: str) -> str:
        """A new session for ``key_name``; returns its id (the cookie's value)."""
        token = secrets.token_urlsafe(32)
        expires = time.time() + self.ttl
        digest = _digest(token)
        if self._directory is None:
            self._prune_memory()
            self._memory[digest] = (key_name, expires)
            return token
        self._directory.mkdir(mode=0o700, exist_ok=True)
        self._prune_files()
        path = self._directory / digest
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump({"key": key_name, "expires": expires}, file)
        return token

    def lookup(self, token: str) -> str | None:
        """The key name of a live session, else ``None``."""
        if not token or len(token) > 128:
            return None
        digest = _digest(token)
        if self._directory is None:
            found = self._memory.get(digest)
        else:
            try:
                data = json.loads((self._directory / digest).read_text())
                found = (str(data["key"]), float(data["expires"]))
            except (OSError, ValueError, KeyError, TypeError):
                found = None
        if found is None:
            return None
        name, expires = found
        if expires <= time.time():
            self.end(token)
            return None
        return name

    def end(self, token: str) -> None:
        digest = _digest(token)
        self._memory.pop(digest, None)
        if self._directory is not None:
            (self._directory / digest).unlink(missing_ok=True)

    def _prune_memory(self) -> None:
        now = time.time()
        for digest in [d for d, (_, expires) in self._memory.items() if expires <= now]:
            del self._memory[digest]
        while len(self._memory) >= MAX_SESSIONS:
            del self._memory[next(iter(self._memory))]  # the oldest

    def _prune_files(self) -> None:
        assert self._directory is not None
        try:
            paths = sorted(self._directory.iterdir(), key=lambda p: p.stat().st_mtime)
        except OSError:
            return
        now = time.time()
        for i, path in enumerate(paths):
            try:
                stale = path.stat().st_mtime + self.ttl <= now
                if stale or len(paths) - i >= MAX_SESSIONS:
                    path.unlink(missing_ok=True)
            except OSError:
                continue
