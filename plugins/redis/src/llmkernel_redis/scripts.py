"""Server-side Lua scripts, run with EVALSHA (loaded again on NOSCRIPT).

Why scripts and not Redis Functions (Redis 7): a function library lives in one
server-wide namespace under its name, so two gateway versions of a rolling deploy
would have to agree on who loads (or replaces) ``llmkernel`` and when; a script is
addressed by the SHA1 of its text, so every version runs its own copy side by side,
nothing to coordinate, and a restarted (empty) Redis is handled by the NOSCRIPT
retry that redis-py already does. Scripts also run on Redis 6 and Valkey.

Each script's text starts with ``-- <name> v<version>``: a new version is a new
text, hence a new SHA, never a replacement of the old one. The *keys* a script
reads and writes carry a layout number of their own (``rl1``, ``bud1``...): a new
script version that keeps the layout shares the keys with the old one (limits hold
across both during the deploy); a change of layout gets new keys.

Inside every script: the clock is Redis's ``TIME`` (never the instances'), amounts
are integers, and every key it writes gets a TTL.
"""

from __future__ import annotations

import hashlib
from importlib import resources

import attrs

__all__ = ["Script", "load"]


@attrs.frozen(kw_only=True)
class Script:
    """A Lua script: ``name`` and ``version`` (also in its first line) and its text."""

    name: str
    version: int
    source: str
    sha: str = attrs.field(init=False)

    @sha.default
    def _sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()

    def __attrs_post_init__(self) -> None:
        first = self.source.split("\n", 1)[0]
        if first != f"-- {self.name} v{self.version}":
            raise ValueError(f"script {self.name} v{self.version}: its first line says {first!r}")

    def __repr__(self) -> str:
        return f"<Script {self.name} v{self.version} {self.sha[:8]}>"


def load(filename: str, name: str, version: int) -> Script:
    """The script in ``llmkernel_redis/lua/<filename>``."""
    source = resources.files("llmkernel_redis").joinpath("lua", filename).read_text("utf-8")
    return Script(name=name, version=version, source=source)
