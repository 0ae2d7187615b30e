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

from typing import TYPE_CHECKING

from llmkernel.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "llmkernel._logging": ["log"],
        "llmkernel.config": ["Config"],
        "llmkernel.context": [
            "Attempt",
            "Decision",
            "Drop",
            "Gate",
            "Outcome",
            "RequestContext",
            "Strategy",
        ],
        "llmkernel.errors": [
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
        ],
        "llmkernel.hookspecs": ["hookimpl", "hookspec"],
        "llmkernel.kernel": ["Kernel"],
        "llmkernel.lifecycle": ["Lifecycle"],
        "llmkernel.models": ["Models"],
        "llmkernel.provider": ["Provider", "ProviderConfig"],
        "llmkernel.routing": ["Candidate"],
        "llmkernel.strategies": ["StrategyRegistry"],
        "llmkernel.streams": ["AsyncChatStream", "ChatStream"],
        "llmkernel.types": [
            "Capabilities",
            "ChatRequest",
            "CostEstimate",
            "EmbeddingRequest",
            "EmbeddingResponse",
            "ErrorEvent",
            "FilePart",
            "FinishEvent",
            "Health",
            "ImagePart",
            "Message",
            "MetadataEvent",
            "ModelInfo",
            "ModelPrice",
            "Reasoning",
            "ReasoningDelta",
            "ReasoningPart",
            "Response",
            "ResponseFormat",
            "StreamEvent",
            "TextDelta",
            "TextPart",
            "TokenCount",
            "Tool",
            "ToolCall",
            "ToolCallDelta",
            "ToolChoice",
            "Usage",
            "UsageEvent",
        ],
    },
)

if TYPE_CHECKING:
    from llmkernel._logging import log
    from llmkernel.config import Config
    from llmkernel.context import Attempt, Decision, Drop, Gate, Outcome, RequestContext, Strategy
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
    from llmkernel.hookspecs import hookimpl, hookspec
    from llmkernel.kernel import Kernel
    from llmkernel.lifecycle import Lifecycle
    from llmkernel.models import Models
    from llmkernel.provider import Provider, ProviderConfig
    from llmkernel.routing import Candidate
    from llmkernel.strategies import StrategyRegistry
    from llmkernel.streams import AsyncChatStream, ChatStream
    from llmkernel.types import (
        Capabilities,
        ChatRequest,
        CostEstimate,
        EmbeddingRequest,
        EmbeddingResponse,
        ErrorEvent,
        FilePart,
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
    "FilePart",
    "FinishEvent",
    "Gate",
    "Health",
    "ImagePart",
    "InvalidRequestError",
    "Kernel",
    "LLMKernelError",
    "Lifecycle",
    "MalformedResponseError",
    "Message",
    "MetadataEvent",
    "ModelInfo",
    "ModelNotFoundError",
    "ModelPrice",
    "Models",
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
