"""``python -m llmkernel_cli``: the ``llmkernel`` command."""

from llmkernel_cli.shell import main

raise SystemExit(main())
