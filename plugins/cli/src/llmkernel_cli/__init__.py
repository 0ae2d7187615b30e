"""The llmkernel CLI for daily use: ``chat``, ``repl``, ``logs``, ``templates``,
``keys``, ``embed``, ``embed-multi`` and ``similar`` (commands of the ``cli`` plugin)."""

__all__: list[str] = []
