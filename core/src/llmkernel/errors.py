"""Every error the kernel and its plugins raise.

::

    LLMKernelError
    ├── ConfigError                  bad config file, key, type or value
    ├── PluginError                  a plugin failed to load or misbehaved
    ├── NoProviderError              no provider serves the model asked for
    │   ├── NoCandidateLeftError     filters dropped every candidate; ``dropped`` says why
    │   └── AllCandidatesFailedError every candidate failed or was refused; ``errors``
    │                                holds each one's reason
    ├── RefusedError                 a gate refused locally before any network call
    │   │                            (rate limit, open breaker): ``kind``, ``retry_after``
    │   └── BudgetExceededError      a budget would be overspent: ``limit``, ``spent``,
    │                                ``period``
    └── ProviderError                a provider call failed (provider, model, status,
        │                            request_id, retryable, fallback)
        ├── AuthenticationError          401, bad or missing key
        ├── PermissionDeniedError        403
        ├── ModelNotFoundError           404, the model or route does not exist
        ├── RateLimitError               429, with ``retry_after`` seconds when known
        ├── QuotaExceededError           out of credit / quota (OpenAI insufficient_quota)
        ├── InvalidRequestError          400, 413, 422: the request itself is wrong
        │   └── ContextWindowExceededError   the prompt does not fit the model
        ├── ContentFilteredError         the provider refused on safety grounds
        ├── ServerError                  500, 502 and other 5xx
        ├── OverloadedError              503, Anthropic 529: try later or elsewhere
        ├── TimeoutError                 408, or no answer within the timeout
        ├── NetworkError                 connection refused, reset, cut-off stream
        └── MalformedResponseError       the provider answered something unparseable

Each :class:`ProviderError` class says whether it is ``retryable`` (worth another try
on the same candidate) and ``fallback`` (worth trying the next candidate); the
pipeline reads only those two attributes, so a plugin's own subclass fits in.
Messages never contain API keys or auth headers.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import ClassVar


class LLMKernelError(Exception):
    """Base of every llmkernel error."""


class ConfigError(LLMKernelError):
    """The configuration is wrong; the message names the key and the file."""


class PluginError(LLMKernelError):
    """A plugin failed to load or broke its contract; the message names it."""


class NoProviderError(LLMKernelError):
    """No installed and enabled provider serves the model asked for."""


class RefusedError(LLMKernelError):
    """A gate refused an attempt before anything was sent: a budget, a rate limit,
    an open circuit breaker. Not a provider failure: no ``on_error``, no retry; the
    kernel records the candidate in ``ctx.dropped`` and tries the next one. When
    every candidate is refused, the last refusal is raised.

    ``kind`` says which gate (``"budget"``, ``"rate_limit"``, ``"breaker"``...);
    ``retry_after`` is the seconds until it may pass, when known (a gateway answers
    429 with ``Retry-After``).
    """

    kind: str = "refused"

    def __init__(
        self,
        message: str,
        *,
        kind: str | None = None,
        retry_after: float | None = None,
        provider: str = "",
        model: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        if kind is not None:
            self.kind = kind
        self.retry_after = retry_after
        self.provider = provider
        self.model = model
        self.retryable = False

    def __str__(self) -> str:
        where = "/".join(p for p in (self.provider, self.model) if p)
        return f"{where}: {self.message}" if where else self.message


class BudgetExceededError(RefusedError):
    """A budget would be overspent by this call: ``limit`` (its name), ``spent`` and
    ``amount`` (Decimal, the period's spend and the limit's amount), ``period``."""

    kind = "budget"

    def __init__(
        self,
        message: str,
        *,
        limit: str = "",
        spent: Decimal | None = None,
        amount: Decimal | None = None,
        period: str = "",
        retry_after: float | None = None,
        provider: str = "",
        model: str = "",
    ) -> None:
        super().__init__(
            message, kind="budget", retry_after=retry_after, provider=provider, model=model
        )
        self.limit = limit
        self.spent = spent
        self.amount = amount
        self.period = period


class ProviderError(LLMKernelError):
    """A call to a provider failed.

    ``retryable``: another attempt on the same candidate may succeed.
    ``fallback``: the next candidate should be tried.
    """

    kind: ClassVar[str] = "provider"
    default_retryable: ClassVar[bool] = False
    default_fallback: ClassVar[bool] = True

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        model: str = "",
        status: int | None = None,
        request_id: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.status = status
        self.request_id = request_id
        self.retryable = self.default_retryable if retryable is None else retryable
        self.fallback = self.default_fallback
        self.retry_after = retry_after
        self.code = code
        #: The HTTP response headers (lower-cased names) when the provider answered.
        self.headers: Mapping[str, str] = headers or {}

    def __str__(self) -> str:
        where = "/".join(p for p in (self.provider, self.model) if p)
        text = f"{where}: {self.message}" if where else self.message
        extra = [f"status {self.status}"] if self.status is not None else []
        if self.request_id:
            extra.append(f"request id {self.request_id}")
        return f"{text} ({', '.join(extra)})" if extra else text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, provider={self.provider!r}, "
            f"model={self.model!r}, status={self.status!r}, request_id={self.request_id!r})"
        )


class AuthenticationError(ProviderError):
    kind = "authentication"


class PermissionDeniedError(ProviderError):
    kind = "permission"


class ModelNotFoundError(ProviderError):
    kind = "not_found"


class RateLimitError(ProviderError):
    kind = "rate_limit"
    default_retryable = True


class QuotaExceededError(ProviderError):
    kind = "quota"


class InvalidRequestError(ProviderError):
    kind = "invalid_request"
    default_fallback = False


class ContextWindowExceededError(InvalidRequestError):
    kind = "context_window"
    # A larger-context candidate may fit the request.
    default_fallback = True


class ContentFilteredError(ProviderError):
    kind = "content_filter"
    default_fallback = False


class ServerError(ProviderError):
    kind = "server"
    default_retryable = True


class OverloadedError(ProviderError):
    kind = "overloaded"
    default_retryable = True


class TimeoutError(ProviderError):
    kind = "timeout"
    default_retryable = True


class NetworkError(ProviderError):
    kind = "network"
    default_retryable = True


class MalformedResponseError(ProviderError):
    kind = "malformed_response"


class NoCandidateLeftError(NoProviderError):
    """Every candidate was dropped before any was tried (a missing capability, a
    context window too small, an open circuit breaker); ``dropped`` lists each
    ``Drop`` with its reason."""

    def __init__(self, message: str, dropped: Sequence[object] = ()) -> None:
        super().__init__(message)
        self.dropped = list(dropped)


class AllCandidatesFailedError(NoProviderError):
    """Every candidate failed; ``errors`` lists each one's last error (a
    ``ProviderError``, or the ``RefusedError`` of a gate) in order."""

    def __init__(self, model: str, errors: Sequence[ProviderError | RefusedError]) -> None:
        self.model = model
        self.errors = list(errors)
        detail = "; ".join(str(e) for e in self.errors) or "no candidates"
        super().__init__(f"every candidate for {model!r} failed: {detail}")


BuiltinTimeoutError = builtins.TimeoutError

__all__ = [
    "AllCandidatesFailedError",
    "AuthenticationError",
    "BudgetExceededError",
    "ConfigError",
    "ContentFilteredError",
    "ContextWindowExceededError",
    "InvalidRequestError",
    "LLMKernelError",
    "MalformedResponseError",
    "ModelNotFoundError",
    "NetworkError",
    "NoCandidateLeftError",
    "NoProviderError",
    "OverloadedError",
    "PermissionDeniedError",
    "PluginError",
    "ProviderError",
    "QuotaExceededError",
    "RateLimitError",
    "RefusedError",
    "ServerError",
    "TimeoutError",
]
