"""Gateway keys: made here, shown once, stored only as SHA-256 hashes.

A key is 32 random bytes (``secrets.token_urlsafe``) behind the prefix ``lk-``;
with that much entropy a plain SHA-256 is the right hash (what GitHub and Stripe do
for API tokens): a slow password hash would only slow every request down.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable

from llmkernel_gateway.settings import HASH_PREFIX, Key

PREFIX = "lk-"


def new_key() -> str:
    """A fresh secret key."""
    return PREFIX + secrets.token_urlsafe(32)


def digest(key: str) -> str:
    """The hex SHA-256 of ``key``."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def stored_hash(key: str) -> str:
    """What goes in config: ``sha256:<hex>``."""
    return HASH_PREFIX + digest(key)


class KeyRing:
    """The configured keys, looked up by the hash of what a client presents."""

    def __init__(self, keys: Iterable[Key]) -> None:
        self._by_digest = {k.digest: k for k in keys}
        self._by_name = {k.name: k for k in self._by_digest.values()}

    def __bool__(self) -> bool:
        return bool(self._by_digest)

    def __len__(self) -> int:
        return len(self._by_digest)

    def lookup(self, presented: str) -> Key | None:
        """The key whose hash matches ``presented``, else ``None``."""
        return self._by_digest.get(digest(presented))

    def named(self, name: str) -> Key | None:
        """The key called ``name`` (a login session's), else ``None``."""
        return self._by_name.get(name)


__all__ = ["PREFIX", "KeyRing", "digest", "new_key", "stored_hash"]
