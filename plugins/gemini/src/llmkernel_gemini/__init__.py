"""Google Gemini API provider for llmkernel."""
