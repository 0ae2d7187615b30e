"""The token counter's settings: the ``[plugin.tiktoken]`` table."""

from __future__ import annotations

from typing import Literal

import attrs

__all__ = ["TiktokenSettings"]


@attrs.frozen(kw_only=True)
class TiktokenSettings:
    """``encodings_dir`` holds encoding files (``o200k_base.tiktoken``, or tiktoken's
    own cache files) for machines that cannot download them; ``TIKTOKEN_CACHE_DIR``
    is searched too. ``estimate_other_providers`` gives Anthropic and Gemini models a
    labelled estimate instead of the kernel's rough one.

    ``remote`` opts in to the providers' own counting endpoints (network calls) for
    :func:`llmkernel_tiktoken.acount_tokens` and ``llmkernel tokens --remote``; the
    API key is read from the environment variable named by ``*_api_key_env``."""

    encodings_dir: str | None = None
    estimate_other_providers: bool = True
    remote: list[Literal["anthropic", "gemini"]] = attrs.field(factory=list)
    anthropic_api_key_env: str = "ANTHROPIC_API_KEY"
    anthropic_base_url: str = "https://api.anthropic.com"
    gemini_api_key_env: str = "GEMINI_API_KEY"
    gemini_base_url: str = "https://generativelanguage.googleapis.com"
