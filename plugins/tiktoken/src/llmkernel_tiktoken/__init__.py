"""llmkernel-tiktoken."""
