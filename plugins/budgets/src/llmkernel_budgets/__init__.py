"""Budgets for llmkernel."""
