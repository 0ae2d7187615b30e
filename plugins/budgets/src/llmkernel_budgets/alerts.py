"""Where alerts go: a structured log event, the ``on_budget_alert`` hook, a webhook.

The webhook POSTs the alert as JSON from its own thread (never the event loop), with
stamina retries on network errors and 5xx answers, and a timeout per try.
"""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING, Any

from llmkernel import log

if TYPE_CHECKING:
    from llmkernel_budgets.store import Alert

__all__ = ["AlertSink", "Webhook"]


class Webhook:
    def __init__(self, url: str, *, timeout: float, attempts: int) -> None:
        self.url = url
        self.timeout = timeout
        self.attempts = attempts
        self.queue: queue.SimpleQueue[Alert | None] = queue.SimpleQueue()
        self.sent = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def post(self, alert: Alert) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="llmkernel-budgets-webhook", daemon=True
                )
                self._thread.start()
        self.queue.put(alert)

    def close(self, timeout: float = 30.0) -> None:
        if self._thread is not None:
            self.queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=self.timeout) as client:
            while (alert := self.queue.get()) is not None:
                try:
                    self._send(client, alert)
                    self.sent += 1
                except Exception as exc:
                    log.error(
                        "llmkernel.budgets.webhook_failed",
                        limit=alert.limit,
                        error=f"{type(exc).__name__}: {exc}",
                    )

    def _send(self, client: Any, alert: Alert) -> None:
        import httpx
        import stamina

        for attempt in stamina.retry_context(
            on=(httpx.TransportError, httpx.HTTPStatusError),
            attempts=self.attempts,
            timeout=self.timeout * self.attempts * 2,
        ):
            with attempt:
                response = client.post(self.url, json={"event": "budget.alert", **alert.as_dict()})
                if response.status_code >= 500:
                    response.raise_for_status()


class AlertSink:
    """Sends each alert to the log, the hook and the webhook; never raises."""

    def __init__(self, kernel: Any, webhook: Webhook | None) -> None:
        self.kernel = kernel
        self.webhook = webhook

    def __call__(self, alert: Alert) -> None:
        log.warning("llmkernel.budgets.alert", **alert.as_dict())
        hook = getattr(self.kernel.hook, "on_budget_alert", None)
        if hook is not None:
            try:
                hook(kernel=self.kernel, alert=alert)
            except Exception as exc:
                log.error(
                    "llmkernel.budgets.alert_hook_failed", error=f"{type(exc).__name__}: {exc}"
                )
        if self.webhook is not None:
            self.webhook.post(alert)
