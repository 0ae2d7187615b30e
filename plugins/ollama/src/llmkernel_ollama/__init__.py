"""Ollama provider for llmkernel."""
