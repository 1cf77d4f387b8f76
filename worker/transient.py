"""Which failures are infrastructure trouble: wait and retry, never dead-letter for them."""

import aio_pika.exceptions
import aiormq.exceptions
import asyncpg

from .domain import ConcurrentChange

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConcurrentChange,  # retried at once a few times by the service, then like any transient error
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
