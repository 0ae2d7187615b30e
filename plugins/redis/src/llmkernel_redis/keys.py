"""Redis key names: the configured prefix, a layout tag, then a part that may come
from a client (a tenant, a key's name), hashed when long or unusual so a stranger
cannot make keys of any size or shape."""

from __future__ import annotations

import hashlib
import re

__all__ = ["part"]

_PLAIN = re.compile(r"^[A-Za-z0-9_.:/|=*@+\-]{0,160}$")


def part(text: str) -> str:
    """``text`` as a key part: as it is when short and plain, else ``h:<sha256>``."""
    if _PLAIN.match(text):
        return text
    return "h:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
