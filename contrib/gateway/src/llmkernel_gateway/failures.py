"""Every failure as an HTTP status and OpenAI's error JSON:
``{"error": {"message", "type", "param", "code"}}``.

=====================================================  ======  =========================
what went wrong                                        status  ``type`` / ``code``
=====================================================  ======  =========================
bad JSON, missing or wrong field, invalid request      400     invalid_request_error
the prompt does not fit the model                      400     code context_length_exceeded
no key, or an unknown key                              401     authentication_error
the key may not use this model                         403     permission_error
a model name the gateway does not know                 400     code model_not_found
no such route; the provider says no such model         404     code model_not_found
body over the size limit                               413     invalid_request_error
budget, rate limit (a gate refused)                    429     code budget_exceeded / ...
upstream rate limit or quota                           429     rate_limit_error
a bug in the gateway                                   500     api_error
upstream failed (5xx, overload, network, bad answer)   502     api_error
upstream down: its breaker open, its health check bad  502     code upstream_unavailable
no deployment can serve it (capability, window)        503     code no_candidate_available
shared state down and ``[redis] fail_closed = true``   503     code shared_state_unavailable
upstream rejected the gateway's own credentials        502     code upstream_authentication
no answer within the deadline                          504     code timeout
=====================================================  ======  =========================

``Retry-After`` (whole seconds, rounded up) goes with a 429 when the refusing gate or
the provider said when to come back, with a 502 ``upstream_unavailable`` when the
breaker's cooldown ends, and with a 503 ``shared_state_unavailable`` (Redis is tried
again after ``[redis] retry_interval``). Messages never carry secrets: the kernel's
errors are already free of them, and unexpected exceptions answer only a request id.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from llmkernel import errors

_DOWN = ("breaker", "health")


@attrs.frozen(kw_only=True)
class Failure:
    status: int
    message: str
    type: str
    code: str | None = None
    param: str | None = None
    retry_after: float | None = None
    kind: str = ""  # the error kind for metrics and logs

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> list[tuple[bytes, bytes]]:
        if self.retry_after is None:
            return []
        return [(b"retry-after", str(max(1, math.ceil(self.retry_after))).encode())]


def bad_request(message: str, param: str | None = None, *, status: int = 400) -> Failure:
    kind = "too_large" if status == 413 else "invalid_request"
    return Failure(
        status=status, message=message, type="invalid_request_error", param=param, kind=kind
    )


def unauthorized(message: str) -> Failure:
    return Failure(
        status=401,
        message=message,
        type="authentication_error",
        code="invalid_api_key",
        kind="authentication",
    )


def forbidden(message: str) -> Failure:
    return Failure(
        status=403,
        message=message,
        type="permission_error",
        code="model_not_allowed",
        kind="permission",
    )


def not_found(message: str, code: str = "model_not_found", param: str | None = "model") -> Failure:
    return Failure(
        status=404,
        message=message,
        type="invalid_request_error",
        code=code,
        param=param,
        kind="not_found",
    )


def timeout(seconds: float) -> Failure:
    return Failure(
        status=504,
        message=f"no answer within the gateway's request timeout ({seconds:g} s)",
        type="api_error",
        code="timeout",
        kind="timeout",
    )


def internal(request_id: str) -> Failure:
    return Failure(
        status=500,
        message=f"internal error in the gateway (request id {request_id})",
        type="api_error",
        code="internal_error",
        kind="internal",
    )


def _shared_down(exc: errors.RefusedError) -> Failure:
    """A gate could not reach the fleet's shared state (Redis) and fails closed."""
    return Failure(
        status=503,
        message=str(exc),
        type="api_error",
        code="shared_state_unavailable",
        retry_after=exc.retry_after,
        kind="shared_unavailable",
    )


def _param(message: str) -> str | None:
    """The field an invalid-request message names (``messages[0].role: ...``)."""
    head, sep, _ = message.partition(": ")
    if sep and head and " " not in head and len(head) < 80:
        return head
    return None


def from_exception(exc: BaseException) -> Failure | None:
    """The failure for a kernel error; ``None`` for anything unexpected (a 500)."""
    if isinstance(exc, errors.AllCandidatesFailedError):
        return _all_failed(exc)
    if _broken(exc):  # the deployment's breaker is open: its upstream failed
        return unavailable(str(exc), getattr(exc, "retry_after", None))
    if isinstance(exc, errors.RefusedError) and exc.kind == "unavailable":
        return _shared_down(exc)
    if isinstance(exc, errors.RefusedError):
        code = "budget_exceeded" if isinstance(exc, errors.BudgetExceededError) else exc.kind
        return Failure(
            status=429,
            message=str(exc),
            type="rate_limit_error" if code != "budget_exceeded" else "insufficient_quota",
            code=code,
            retry_after=exc.retry_after,
            kind=f"refused_{exc.kind}",
        )
    if isinstance(exc, errors.NoCandidateLeftError):
        down = [e for d in exc.dropped if _broken(e := getattr(d, "error", None))]
        if exc.dropped and len(down) == len(exc.dropped):  # every deployment is down
            return unavailable(str(exc), _soonest(down))
        return Failure(
            status=503,
            message=str(exc),
            type="api_error",
            code="no_candidate_available",
            kind="no_candidate",
        )
    if isinstance(exc, errors.NoProviderError):
        return Failure(
            status=400,
            message=str(exc),
            type="invalid_request_error",
            code="model_not_found",
            param="model",
            kind="unknown_model",
        )
    if isinstance(exc, errors.ProviderError):
        return _provider(exc)
    # A broken plugin or config, or a bug: the details go to the log, not the client.
    return None


def _provider(exc: errors.ProviderError) -> Failure:
    text = str(exc)
    kind = exc.kind
    if isinstance(exc, errors.ContextWindowExceededError):
        return Failure(
            status=400,
            message=text,
            type="invalid_request_error",
            code="context_length_exceeded",
            param="messages",
            kind=kind,
        )
    if isinstance(exc, errors.ContentFilteredError):
        return Failure(
            status=400, message=text, type="invalid_request_error", code="content_filter", kind=kind
        )
    if isinstance(exc, errors.InvalidRequestError):
        status = 413 if exc.status == 413 else 400
        return Failure(
            status=status,
            message=exc.message if exc.provider == "" else text,
            type="invalid_request_error",
            param=_param(exc.message),
            code=exc.code,
            kind=kind,
        )
    if isinstance(exc, errors.ModelNotFoundError):
        return not_found(text)
    if isinstance(exc, errors.RateLimitError):
        return Failure(
            status=429,
            message=text,
            type="rate_limit_error",
            code="rate_limit_exceeded",
            retry_after=exc.retry_after,
            kind=kind,
        )
    if isinstance(exc, errors.QuotaExceededError):
        return Failure(
            status=429,
            message=text,
            type="insufficient_quota",
            code="insufficient_quota",
            retry_after=exc.retry_after,
            kind=kind,
        )
    if isinstance(exc, errors.AuthenticationError | errors.PermissionDeniedError):
        return Failure(
            status=502,
            message=f"the upstream provider rejected the gateway's credentials: {text}",
            type="api_error",
            code="upstream_authentication",
            kind=kind,
        )
    if isinstance(exc, errors.TimeoutError):
        return Failure(status=504, message=text, type="api_error", code="timeout", kind=kind)
    return Failure(status=502, message=text, type="api_error", code="upstream_error", kind=kind)


def _broken(exc: object) -> bool:
    """A refusal or a drop because the deployment is down: its breaker is open (the
    routing plugin's gate and filter) or its health check failed."""
    return isinstance(exc, errors.LLMKernelError) and getattr(exc, "kind", None) in _DOWN


def _soonest(found: list[Any]) -> float | None:
    waits = [w for e in found if (w := getattr(e, "retry_after", None)) is not None]
    return min(waits) if waits else None


def unavailable(message: str, retry_after: float | None) -> Failure:
    """The upstream is down (the breaker open after its failures, whose last error
    the message keeps): a 502 like the failures that opened it, with ``Retry-After``
    when the cooldown's end is known. Never a 429: the client did nothing wrong."""
    return Failure(
        status=502,
        message=message,
        type="api_error",
        code="upstream_unavailable",
        retry_after=retry_after,
        kind="upstream_unavailable",
    )


def _all_failed(exc: errors.AllCandidatesFailedError) -> Failure:
    """Every candidate failed: all refused (by limits, budgets) is a 429; all timed
    out a 504; else 502 (a breaker's refusal counts as its upstream's failure)."""
    failures = [e for e in exc.errors if not _broken(e)]
    if len(failures) < len(exc.errors) and not any(
        isinstance(e, errors.RateLimitError | errors.QuotaExceededError | errors.RefusedError)
        for e in failures
    ):
        return unavailable(str(exc), _soonest([e for e in exc.errors if _broken(e)]))
    if failures and all(isinstance(e, errors.RefusedError) for e in failures):
        waits = [e.retry_after for e in failures if e.retry_after is not None]
        last = failures[-1]
        if isinstance(last, errors.RefusedError) and last.kind == "unavailable":
            return _shared_down(last)
        code = "budget_exceeded" if isinstance(last, errors.BudgetExceededError) else "refused"
        return Failure(
            status=429,
            message=str(exc),
            type="rate_limit_error",
            code=code,
            retry_after=min(waits) if waits else None,
            kind="refused",
        )
    if failures and all(isinstance(e, errors.TimeoutError) for e in failures):
        return Failure(
            status=504, message=str(exc), type="api_error", code="timeout", kind="timeout"
        )
    if failures and all(
        isinstance(e, errors.RateLimitError | errors.QuotaExceededError | errors.RefusedError)
        for e in failures
    ):
        waits = [e.retry_after for e in failures if e.retry_after is not None]
        return Failure(
            status=429,
            message=str(exc),
            type="rate_limit_error",
            code="rate_limit_exceeded",
            retry_after=min(waits) if waits else None,
            kind="rate_limit",
        )
    return Failure(
        status=502, message=str(exc), type="api_error", code="upstream_error", kind="upstream"
    )


__all__ = [
    "Failure",
    "bad_request",
    "forbidden",
    "from_exception",
    "internal",
    "not_found",
    "timeout",
    "unauthorized",
    "unavailable",
]
