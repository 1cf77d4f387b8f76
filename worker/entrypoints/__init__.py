"""Entry points: the ``outplan-worker`` and ``outplanctl`` command lines."""
