"""Which failures are worth waiting for: retry them, never dead-letter a command for them.

``INFRASTRUCTURE_ERRORS``: the database, the broker or the link to them (a connection that raised
one is in an unknown state and is closed, not reused). ``TRANSIENT_ERRORS``: those, and a batch
that lost a race with another writer (``ConcurrentChange``: nothing was written; run it again).
"""

import aio_pika.exceptions
import aiormq.exceptions
import asyncpg

from .domain import ConcurrentChange

INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes ConnectionError and socket errors
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # "another operation is in progress": a connection left mid-protocol by a broken link.
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # a standby during fail-over
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.ChannelClosed,
    aio_pika.exceptions.AMQPConnectionError,
)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConcurrentChange,  # retried at once a few times by the service, then like any transient error
    *INFRASTRUCTURE_ERRORS,
)
