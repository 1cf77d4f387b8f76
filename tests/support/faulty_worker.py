"""The real worker with a create handler that fails on purpose: a stand-in for a bug in a handler.

``python -m tests.support.faulty_worker run`` (from the repository's root) takes the same
arguments and ``OUTPLAN_*`` environment as the ``outplan-worker`` console script, and runs the
same code, except that its handlers are ``FAULTY_REGISTRY``: an ``outplan.create`` whose ``name``
is ``MARKER`` raises ``InjectedFault``; every other command is handled as in production. The
registry reaches the worker's ``Service`` through the public ``handlers`` argument of
``worker.entrypoints.cli.main``; production code has no switch for it.

``tests.support.workers.start_worker(..., launcher=faulty_worker_command)`` starts one.
"""

import sys
from dataclasses import replace

from contracts import CreateOutplan
from worker.domain import Versioned
from worker.entrypoints import cli
from worker.handlers import REGISTRY, Change, Context, Registry, create_outplan

MARKER = "__raise__"  # the outplan name that makes the create handler fail
FAULT_MESSAGE = f"handler failure injected for the outplan name {MARKER!r}"


class InjectedFault(RuntimeError):
    """Raised by ``create_or_fail`` for ``MARKER``, with ``FAULT_MESSAGE``.

    It is not a ``DomainError``, so the worker takes it for a bug: the command is delivered again
    up to ``OUTPLAN_RETRY_LIMIT`` times, then answered 500 ``INTERNAL_ERROR`` and dead-lettered
    with ``x-exception-class: InjectedFault`` and ``x-exception-message: FAULT_MESSAGE``.
    """


def create_or_fail(cmd: CreateOutplan, current: Versioned | None, ctx: Context) -> Change:
    """``worker.handlers.create_outplan``, except that ``cmd.name == MARKER`` raises ``InjectedFault``."""
    if cmd.name == MARKER:
        raise InjectedFault(FAULT_MESSAGE)
    return create_outplan(cmd, current, ctx)


FAULTY_REGISTRY: Registry = replace(REGISTRY, changes={**REGISTRY.changes, CreateOutplan: create_or_fail})


def main(argv: list[str] | None = None) -> int:
    """``outplan-worker``'s ``main`` on ``FAULTY_REGISTRY``: the same arguments, exit codes and settings."""
    return cli.main(argv, handlers=FAULTY_REGISTRY)


if __name__ == "__main__":
    sys.exit(main())
