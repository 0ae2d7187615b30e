"""llmkernel: one API over every LLM provider.

    from llmkernel import Kernel

    with Kernel.from_config() as kernel:
        response = kernel.chat(model="mock/echo", messages=[{"role": "user", "content": "hi"}])
        print(response.text, response.usage.total_tokens, response.cost)

Plugins implement hooks with ``from llmkernel import hookimpl``.

Names load on first use (PEP 562), so ``import llmkernel`` stays cheap and a plugin
that needs only ``hookimpl`` never imports the pipeline.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Attempt": "llmkernel.context",
    "Decision": "llmkernel.context",
    "Drop": "llmkernel.context",
    "Gate": "llmkernel.context",
    "Outcome": "llmkernel.context",
    "RequestContext": "llmkernel.context",
    "Strategy": "llmkernel.context",
    "BudgetExceededError": "llmkernel.errors",
    "RefusedError": "llmkernel.errors",
    "hookspec": "llmkernel.hookspecs",
    "StrategyRegistry": "llmkernel.strategies",
    "Config": "llmkernel.config",
    "log": "llmkernel._logging",
    "AllCandidatesFailedError": "llmkernel.errors",
    "AuthenticationError": "llmkernel.errors",
    "ConfigError": "llmkernel.errors",
    "ContentFilteredError": "llmkernel.errors",
    "ContextWindowExceededError": "llmkernel.errors",
    "InvalidRequestError": "llmkernel.errors",
    "LLMKernelError": "llmkernel.errors",
    "MalformedResponseError": "llmkernel.errors",
    "ModelNotFoundError": "llmkernel.errors",
    "NetworkError": "llmkernel.errors",
    "NoCandidateLeftError": "llmkernel.errors",
    "NoProviderError": "llmkernel.errors",
    "OverloadedError": "llmkernel.errors",
    "PermissionDeniedError": "llmkernel.errors",
    "PluginError": "llmkernel.errors",
    "ProviderError": "llmkernel.errors",
    "QuotaExceededError": "llmkernel.errors",
    "RateLimitError": "llmkernel.errors",
    "ServerError": "llmkernel.errors",
    "TimeoutError": "llmkernel.errors",
    "hookimpl": "llmkernel.hookspecs",
    "AsyncChatStream": "llmkernel.kernel",
    "ChatStream": "llmkernel.kernel",
    "Kernel": "llmkernel.kernel",
    "Provider": "llmkernel.provider",
    "ProviderConfig": "llmkernel.provider",
    "Candidate": "llmkernel.routing",
    "Capabilities": "llmkernel.types",
    "ChatRequest": "llmkernel.types",
    "CostEstimate": "llmkernel.types",
    "EmbeddingRequest": "llmkernel.types",
    "EmbeddingResponse": "llmkernel.types",
    "ErrorEvent": "llmkernel.types",
    "FinishEvent": "llmkernel.types",
    "Health": "llmkernel.types",
    "ImagePart": "llmkernel.types",
    "Message": "llmkernel.types",
    "MetadataEvent": "llmkernel.types",
    "ModelInfo": "llmkernel.types",
    "ModelPrice": "llmkernel.types",
    "Reasoning": "llmkernel.types",
    "ReasoningDelta": "llmkernel.types",
    "ReasoningPart": "llmkernel.types",
    "Response": "llmkernel.types",
    "ResponseFormat": "llmkernel.types",
    "StreamEvent": "llmkernel.types",
    "TextDelta": "llmkernel.types",
    "TextPart": "llmkernel.types",
    "TokenCount": "llmkernel.types",
    "Tool": "llmkernel.types",
    "ToolCall": "llmkernel.types",
    "ToolCallDelta": "llmkernel.types",
    "ToolChoice": "llmkernel.types",
    "Usage": "llmkernel.types",
    "UsageEvent": "llmkernel.types",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'llmkernel' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from llmkernel._logging import log
    from llmkernel.config import (
        Config,
    )
    from llmkernel.context import (
        Attempt,
        Decision,
        Drop,
        Gate,
        Outcome,
        RequestContext,
        Strategy,
    )
    from llmkernel.errors import (
        AllCandidatesFailedError,
        AuthenticationError,
        BudgetExceededError,
        ConfigError,
        ContentFilteredError,
        ContextWindowExceededError,
        InvalidRequestError,
        LLMKernelError,
        MalformedResponseError,
        ModelNotFoundError,
        NetworkError,
        NoCandidateLeftError,
        NoProviderError,
        OverloadedError,
        PermissionDeniedError,
        PluginError,
        ProviderError,
        QuotaExceededError,
        RateLimitError,
        RefusedError,
        ServerError,
        TimeoutError,
    )
    from llmkernel.hookspecs import (
        hookimpl,
        hookspec,
    )
    from llmkernel.kernel import (
        AsyncChatStream,
        ChatStream,
        Kernel,
    )
    from llmkernel.provider import (
        Provider,
        ProviderConfig,
    )
    from llmkernel.routing import (
        Candidate,
    )
    from llmkernel.strategies import StrategyRegistry
    from llmkernel.types import (
        Capabilities,
        ChatRequest,
        CostEstimate,
        EmbeddingRequest,
        EmbeddingResponse,
        ErrorEvent,
        FinishEvent,
        Health,
        ImagePart,
        Message,
        MetadataEvent,
        ModelInfo,
        ModelPrice,
        Reasoning,
        ReasoningDelta,
        ReasoningPart,
        Response,
        ResponseFormat,
        StreamEvent,
        TextDelta,
        TextPart,
        TokenCount,
        Tool,
        ToolCall,
        ToolCallDelta,
        ToolChoice,
        Usage,
        UsageEvent,
    )

__all__ = [
    "AllCandidatesFailedError",
    "AsyncChatStream",
    "Attempt",
    "AuthenticationError",
    "BudgetExceededError",
    "Candidate",
    "Capabilities",
    "ChatRequest",
    "ChatStream",
    "Config",
    "ConfigError",
    "ContentFilteredError",
    "ContextWindowExceededError",
    "CostEstimate",
    "Decision",
    "Drop",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "ErrorEvent",
    "FinishEvent",
    "Gate",
    "Health",
    "ImagePart",
    "InvalidRequestError",
    "Kernel",
    "LLMKernelError",
    "MalformedResponseError",
    "Message",
    "MetadataEvent",
    "ModelInfo",
    "ModelNotFoundError",
    "ModelPrice",
    "NetworkError",
    "NoCandidateLeftError",
    "NoProviderError",
    "Outcome",
    "OverloadedError",
    "PermissionDeniedError",
    "PluginError",
    "Provider",
    "ProviderConfig",
    "ProviderError",
    "QuotaExceededError",
    "RateLimitError",
    "Reasoning",
    "ReasoningDelta",
    "ReasoningPart",
    "RefusedError",
    "RequestContext",
    "Response",
    "ResponseFormat",
    "ServerError",
    "Strategy",
    "StrategyRegistry",
    "StreamEvent",
    "TextDelta",
    "TextPart",
    "TimeoutError",
    "TokenCount",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolChoice",
    "Usage",
    "UsageEvent",
    "__version__",
    "hookimpl",
    "hookspec",
    "log",
]
