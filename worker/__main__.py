"""``python -m worker``: the ``outplan-worker`` command line."""

from .entrypoints.cli import main

raise SystemExit(main())
