"""The token counter's settings: the ``[plugin.tiktoken]`` table."""

from __future__ import annotations

import attrs

__all__ = ["TiktokenSettings"]


@attrs.frozen(kw_only=True)
class TiktokenSettings:
    """``encodings_dir`` holds encoding files (``o200k_base.tiktoken``, or tiktoken's
    own cache files) for machines that cannot download them; ``TIKTOKEN_CACHE_DIR``
    is searched too. ``estimate_other_providers`` gives Anthropic and Gemini models a
    labelled estimate instead of the kernel's rough one."""

    encodings_dir: str | None = None
    estimate_other_providers: bool = True
