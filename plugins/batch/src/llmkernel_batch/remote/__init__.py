"""The providers' own batch APIs (OpenAI Batch, Anthropic Message Batches, Gemini
batch mode), spoken over httpx with each provider instance's settings."""

from __future__ import annotations

from llmkernel_batch.remote.base import Parsed, Remote, RemoteError, Status, adapter_for

__all__ = ["Parsed", "Remote", "RemoteError", "Status", "adapter_for"]
