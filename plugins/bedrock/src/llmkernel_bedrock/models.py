"""What Bedrock models can do, as data, and the ``ListFoundationModels`` answer.

Context windows and output limits are from the model cards of the Amazon Bedrock
user guide (https://docs.aws.amazon.com/bedrock/latest/userguide/, pages
``model-card-anthropic-claude-3-5-haiku``, ``model-card-anthropic-claude-haiku-5-5``
and the Amazon Nova user guide), read 2026-11-30. Models not listed are unknown
(``None``): ask :meth:`~llmkernel_bedrock.provider.BedrockProvider.list_models`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmkernel.types import Capabilities, ModelInfo

__all__ = [
    "KNOWN_MODELS",
    "SOURCE",
    "base_model",
    "capabilities_for",
    "model_list",
]

SOURCE = "Amazon Bedrock model cards (docs.aws.amazon.com/bedrock/latest/userguide), 2026-11-30"

#: Cross-region inference profile prefixes (``us.anthropic.claude-...``).
_REGION_PREFIXES = ("us-gov.", "us.", "eu.", "apac.", "jp.", "au.", "ca.", "global.")

KNOWN_MODELS: dict[str, Capabilities] = {
    # Claude 3.5 Haiku: 200K window, 8K output, text in (model card).
    "anthropic.claude-3-5-haiku-20241022": Capabilities(
        tools=True, images=False, context_window=200_000, max_output_tokens=8_192
    ),
    # Claude Haiku 5.5: 1M window, 128K output, reasoning (model card, 2026-10-07 launch).
    "anthropic.claude-haiku-5-5": Capabilities(
        tools=True,
        images=True,
        json_schema=True,
        reasoning=True,
        context_window=1_000_000,
        max_output_tokens=128_000,
    ),
    # Amazon Nova (first generation): Pro and Lite 300K window, Micro 128K text only;
    # the cards give 5K output tokens.
    "amazon.nova-pro-v1": Capabilities(
        tools=True, images=True, context_window=300_000, max_output_tokens=5_120
    ),
    "amazon.nova-lite-v1": Capabilities(
        tools=True, images=True, context_window=300_000, max_output_tokens=5_120
    ),
    "amazon.nova-micro-v1": Capabilities(
        tools=True, images=False, context_window=128_000, max_output_tokens=5_120
    ),
    # Embedding models (InvokeModel).
    "amazon.titan-embed-text-v2": Capabilities(tools=False, embeddings=True),
    "amazon.titan-embed-text-v1": Capabilities(tools=False, embeddings=True),
    "cohere.embed-english-v3": Capabilities(tools=False, embeddings=True),
    "cohere.embed-multilingual-v3": Capabilities(tools=False, embeddings=True),
    "cohere.embed-v4": Capabilities(tools=False, embeddings=True),
}


def base_model(model: str) -> str:
    """The foundation model id behind ``model``: without a cross-region inference
    profile prefix (``us.``, ``eu.``, ``apac.``, ``global.``...) or an ARN's path."""
    name = model.rsplit("/", 1)[-1] if model.startswith("arn:") else model
    for prefix in _REGION_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def capabilities_for(model: str) -> Capabilities | None:
    """Known capabilities of ``model`` (any version suffix such as ``-v1:0``, any
    cross-region prefix), by the longest matching known id."""
    name = base_model(model)
    for known in sorted(KNOWN_MODELS, key=len, reverse=True):
        if name == known or name.startswith(known + "-") or name.startswith(known + ":"):
            return KNOWN_MODELS[known]
    return None


def model_list(data: Any, provider: str) -> list[ModelInfo] | None:
    """``ListFoundationModels``' ``modelSummaries`` as model infos, or None when
    the answer does not have that shape."""
    if not isinstance(data, Mapping) or not isinstance(data.get("modelSummaries"), list):
        return None
    models = []
    for item in data["modelSummaries"]:
        if not isinstance(item, Mapping) or not isinstance(item.get("modelId"), str):
            return None
        model_id = item["modelId"]
        known = capabilities_for(model_id)
        outputs = item.get("outputModalities")
        if known is None and isinstance(outputs, list) and "EMBEDDING" in outputs:
            known = Capabilities(tools=False, embeddings=True)
        owner = item.get("providerName")
        models.append(
            ModelInfo(
                id=model_id,
                provider=provider,
                capabilities=known,
                owned_by=owner if isinstance(owner, str) else None,
            )
        )
    return models
