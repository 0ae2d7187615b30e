"""Gateway keys: made here, shown once, stored only as SHA-256 hashes.

A key is 32 random bytes (``secrets.token_urlsafe``) behind the prefix ``lk-``;
with that much entropy a plain SHA-256 is the right hash (what GitHub and Stripe do
for API tokens): a slow password hash would only slow every request down.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from llmkernel_gateway.settings import HASH_PREFIX, Key

if TYPE_CHECKING:
    from llmkernel_gateway.records import KeyRecord

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
    """The keys the gateway accepts, looked up by the hash of what a client
    presents: the config file's (read-only) and the key store's, whose rotated
    secrets stay valid until their grace period ends. A config key wins over a
    store key of the same name (the store refuses to make one)."""

    def __init__(
        self, keys: Iterable[Key], records: Iterable[KeyRecord] = (), *, required: bool = False
    ) -> None:
        by_digest: dict[str, tuple[Key, float | None]] = {}
        by_name: dict[str, Key] = {}
        for key in keys:
            by_digest[key.digest] = (key, None)
            by_name[key.name] = key
        for record in records:
            if record.name in by_name:
                continue
            key = record.key()
            by_name[key.name] = key
            for secret in record.secrets:
                by_digest.setdefault(secret.digest, (key, secret.until))
        self._by_digest = by_digest
        self._by_name = by_name
        self.has_admin = any(k.admin for k in by_name.values())
        #: keys are asked for even when none is left (the key store had some)
        self.required = required

    def __bool__(self) -> bool:
        """Whether requests must present a key (else the gateway is open)."""
        return self.required or bool(self._by_digest)

    def __len__(self) -> int:
        return len(self._by_name)

    def keys(self) -> list[Key]:
        return list(self._by_name.values())

    def check(self, presented: str, now: float | None = None) -> Key | str:
        """The key ``presented`` opens, or why it opens none (for the 401)."""
        found = self._by_digest.get(digest(presented))
        if found is None:
            return "the API key is not valid"
        key, until = found
        now = time.time() if now is None else now
        if until is not None and until <= now:
            return "the API key was rotated and its grace period has ended"
        if key.disabled:
            return f"the API key {key.name!r} is disabled"
        if key.expires_at is not None and key.expires_at <= now:
            return f"the API key {key.name!r} has expired"
        return key

    def lookup(self, presented: str) -> Key | None:
        """The usable key whose hash matches ``presented``, else ``None``."""
        found = self.check(presented)
        return found if isinstance(found, Key) else None

    def named(self, name: str) -> Key | None:
        """The usable key called ``name`` (a login session's), else ``None``."""
        key = self._by_name.get(name)
        if key is None or key.disabled:
            return None
        if key.expires_at is not None and key.expires_at <= time.time():
            return None
        return key


__all__ = ["PREFIX", "KeyRing", "digest", "new_key", "stored_hash"]
