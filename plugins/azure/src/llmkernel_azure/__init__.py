"""Azure OpenAI provider for llmkernel (built on llmkernel-openai)."""
