"""Keeping secrets out of errors: the API key and auth header values a provider
sends are replaced by ``[redacted]`` wherever an answer echoes them.

:class:`~llmkernel_http.HTTPProvider` does this for its subclasses. A provider that
does not stand on it (a signed-request API, say) uses the same three functions::

    secrets = collect_secrets(key, headers)      # when the client is built
    ...
    except ProviderError as error:
        scrub(error, secrets)                    # message, code and headers, in place
        raise
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmkernel.errors import ProviderError

__all__ = ["REDACTED", "SECRET_HEADERS", "Secrets", "collect_secrets", "redact", "scrub"]

#: What a secret is replaced with.
REDACTED = "[redacted]"
#: Header names whose values are secrets wherever they appear.
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "x-amz-security-token",
    }
)


class Secrets(tuple[str, ...]):
    """The values to redact, longest first; never shown, even in a ``repr``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<{len(self)} secret value(s), hidden>"


def collect_secrets(
    key: str | None, *headers: Mapping[str, str], extra: Iterable[str] = ()
) -> Secrets:
    """The secrets among ``key``, the values of secret headers in ``headers`` (and
    the bare token of a ``Bearer``/``Basic``/``Token`` value) and ``extra``. Values
    shorter than 4 characters are ignored (they would redact ordinary words)."""
    found = {key} if key else set()
    found.update(extra)
    for table in headers:
        for name, value in table.items():
            if name.lower() in SECRET_HEADERS and value:
                found.add(value)
                scheme, _, token = value.partition(" ")
                if token and scheme.lower() in ("bearer", "basic", "token"):
                    found.add(token)
    # the longest first, so "Bearer sk-x" goes before "sk-x"
    return Secrets(sorted((s for s in found if s and len(s) >= 4), key=len, reverse=True))


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``[redacted]``."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def scrub(error: ProviderError, secrets: Iterable[str]) -> ProviderError:
    """Remove ``secrets`` from ``error``'s message, code and headers, in place."""
    secrets = tuple(secrets)
    if not secrets:
        return error
    message = redact(error.message, secrets)
    if message != error.message:
        error.message = message
        error.args = (message, *error.args[1:])
    if error.code:
        error.code = redact(error.code, secrets)
    if error.headers:
        error.headers = {k: redact(v, secrets) for k, v in error.headers.items()}
    return error
