"""llmkernel: one API over every LLM provider.

    from llmkernel import Kernel

    with Kernel.from_config() as kernel:
        response = kernel.chat(model="mock/echo", messages=[{"role": "user", "content": "hi"}])
        print(response.text, response.usage.total_tokens, response.cost)

Plugins implement hooks with ``from llmkernel import hookimpl``.
"""

from __future__ import annotations

from llmkernel.config import Config
from llmkernel.errors import (
    AllCandidatesFailedError,
    AuthenticationError,
    ConfigError,
    ContentFilteredError,
    ContextWindowExceededError,
    InvalidRequestError,
    LLMKernelError,
    MalformedResponseError,
    ModelNotFoundError,
    NetworkError,
    NoProviderError,
    OverloadedError,
    PermissionDeniedError,
    PluginError,
    ProviderError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    TimeoutError,
)
from llmkernel.hookspecs import hookimpl
from llmkernel.kernel import AsyncChatStream, ChatStream, Kernel
from llmkernel.provider import Provider, ProviderConfig
from llmkernel.routing import Candidate
from llmkernel.types import (
    Capabilities,
    ChatRequest,
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

__version__ = "0.1.0"

__all__ = [
    "AllCandidatesFailedError",
    "AsyncChatStream",
    "AuthenticationError",
    "Candidate",
    "Capabilities",
    "ChatRequest",
    "ChatStream",
    "Config",
    "ConfigError",
    "ContentFilteredError",
    "ContextWindowExceededError",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "ErrorEvent",
    "FinishEvent",
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
    "NoProviderError",
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
    "Response",
    "ResponseFormat",
    "ServerError",
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
]
