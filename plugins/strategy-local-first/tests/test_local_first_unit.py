from __future__ import annotations

import pytest

from llmkernel_strategy_local_first import is_local_url


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://localhost:11434", True),
        ("http://127.0.0.1:8000/v1", True),
        ("http://[::1]:1234/v1", True),
        ("http://192.168.1.20:8080/v1", True),
        ("http://10.0.0.5/v1", True),
        ("http://gpu-box.local:8000/v1", True),
        ("https://api.openai.com/v1", False),
        ("https://api.groq.com/openai/v1", False),
        ("https://8.8.8.8/v1", False),
        ("", False),
    ],
)
def test_local_urls(url, local):
    assert is_local_url(url) is local
