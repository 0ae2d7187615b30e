"""SQLite ledger of every llmkernel call."""
