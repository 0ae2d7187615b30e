"""Anthropic Messages API provider for llmkernel."""
