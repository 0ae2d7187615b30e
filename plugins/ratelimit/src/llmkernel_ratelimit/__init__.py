"""llmkernel-ratelimit."""
