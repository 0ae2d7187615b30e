"""OpenAI and OpenAI-compatible servers for llmkernel.

Groq, Together, DeepSeek, OpenRouter, Mistral, vLLM, LM Studio, llama.cpp and any
other server speaking OpenAI's Chat Completions API.
"""
