"""Entry points: the ``outplan-worker`` command line."""
