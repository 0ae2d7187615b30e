"""API keys stored by ``llmkernel keys set`` (the llmkernel-cli plugin), read by
HTTP providers (:meth:`HTTPSettings.api_key`) whose ``api_key_env`` variable is unset.

``keys.json`` in the user config directory (``$XDG_CONFIG_HOME/llmkernel``, mode
0600) maps a provider instance name to its key; a name mapped to ``null`` is in
the system keyring (service ``llmkernel``), read with the ``keyring`` package.
The environment always wins; a key is never logged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["KEYRING_SERVICE", "keys_path", "stored_key"]

KEYRING_SERVICE = "llmkernel"


def keys_path(env: Mapping[str, str] | None = None) -> Path:
    from llmkernel.config import user_config_dir

    return user_config_dir(os.environ if env is None else env) / "keys.json"


def stored_key(name: str) -> str | None:
    """The stored key of provider ``name``, or ``None`` (no file, no such name, a
    file that cannot be read, or a keyring that does not answer)."""
    try:
        data = json.loads(keys_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or name not in data:
        return None
    value = data[name]
    if isinstance(value, str):
        return value or None
    try:
        import importlib

        keyring = importlib.import_module("keyring")  # optional: llmkernel-cli[keyring]
        found = keyring.get_password(KEYRING_SERVICE, name)
    except Exception:  # not installed, or no backend
        return None
    return str(found) if found else None
