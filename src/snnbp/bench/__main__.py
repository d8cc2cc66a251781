"""``python -m snnbp.bench``: the child-process entry point of the harness (and a standalone CLI)."""

from snnbp.bench.harness import main

raise SystemExit(main())
