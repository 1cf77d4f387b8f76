"""The unit of work: one pooled connection for a batch of changes or a query.

A batch is read with one statement and written with one; the write is atomic on its own and
checks that nothing it read has changed, so no transaction is held open across the handlers.
``begin()`` opens a transaction for the units that need one: a batch run again after a collision
locks its outplans first (``lock``), and tests hold a write uncommitted with it.
"""

import uuid
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

import asyncpg

from contracts import names

from ..domain import Versioned
from ..transient import INFRASTRUCTURE_ERRORS
from .batch_write import NewEvent, write_changes
from .inbox import IdempotencyRecord, Key
from .outbox import LoggedEvent
from .outplans import OutplanRepository
from .snapshot import Snapshot, read_snapshot


class UnitOfWork(Protocol):
    """What the service sees; a batch of commands shares one unit."""

    outplans: OutplanRepository

    async def begin(self) -> None:
        """Open a transaction: writes then wait for ``commit()``, and roll back if the unit ends
        without it."""
        ...

    async def lock(self, ids: list[uuid.UUID]) -> None:
        """Row-lock these outplans until the transaction ends (after ``begin()``)."""
        ...

    async def read(self, ids: list[uuid.UUID], keys: list[Key]) -> Snapshot:
        """The outplans of ``ids``, the idempotency records of ``keys``
        ((customer_id, message_id)) and the database's clock."""
        ...

    async def write(
        self,
        *,
        inserted: list[Versioned],
        replaced: list[Versioned],
        events: list[NewEvent],
        records: list[IdempotencyRecord],
        read_versions: dict[uuid.UUID, int],
        moment: datetime,
    ) -> list[LoggedEvent]:
        """Write a batch in one statement: new outplans, ``replaced`` ones (still at their
        ``read_versions``), their events and idempotency records, all at ``moment``. Returns the
        events as numbered for the relay. Raises ``ConcurrentChange``, writing nothing, when
        another writer changed a replaced outplan or recorded one of the message ids first."""
        ...

    async def commit(self) -> None:
        """Commit what ``begin()`` opened; without a transaction, writes have committed already."""
        ...


class PgUnitOfWork:
    """``async with PgUnitOfWork(pool) as uow: ...``; an open ``begin()`` rolls back unless committed.

    Holds one connection of ``pool`` while open. ``read_only`` units may not ``begin`` or
    ``write``; ``event_source`` is the CloudEvents ``source`` written into event bodies;
    ``on_commit`` is called with the events each commit made durable (the relay takes them over).
    A transient error (a broken link) ending the block terminates the connection rather than
    return it to the pool in an unknown state.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        read_only: bool = False,
        event_source: str = names.EVENT_SOURCE,
        on_commit: Callable[[list[LoggedEvent]], None] | None = None,
    ) -> None:
        self._pool = pool
        self._event_source = event_source
        self._on_commit = on_commit  # told of the events each commit made durable (the relay)
        self._uncommitted: list[LoggedEvent] = []
        self._read_only = read_only
        self._conn: asyncpg.pool.PoolConnectionProxy | None = None
        self._tx: asyncpg.transaction.Transaction | None = None

    async def __aenter__(self) -> Self:
        self._conn = conn = await self._pool.acquire()
        self.outplans = OutplanRepository(conn)
        return self

    async def begin(self) -> None:
        """Open a transaction; writes then wait for ``commit()``."""
        assert self._conn is not None and not self._read_only
        self._tx = self._conn.transaction()
        await self._tx.start()

    async def lock(self, ids: list[uuid.UUID]) -> None:
        """Lock these outplans until the transaction ends (in id order: no deadlocks)."""
        assert self._conn is not None and self._tx is not None
        await self.outplans.lock(ids)

    async def read(self, ids: list[uuid.UUID], keys: list[Key]) -> Snapshot:
        """The batch's ``Snapshot`` (``read_snapshot``)."""
        assert self._conn is not None
        return await read_snapshot(self._conn, ids, keys)

    async def write(
        self,
        *,
        inserted: list[Versioned],
        replaced: list[Versioned],
        events: list[NewEvent],
        records: list[IdempotencyRecord],
        read_versions: dict[uuid.UUID, int],
        moment: datetime,
    ) -> list[LoggedEvent]:
        """The batch's write (``write_changes``); ``on_commit`` hears of its events once they commit."""
        assert self._conn is not None and not self._read_only
        written = await write_changes(
            self._conn,
            inserted=inserted,
            replaced=replaced,
            events=events,
            records=records,
            read_versions=read_versions,
            moment=moment,
            source=self._event_source,
        )
        self._uncommitted += written
        if self._tx is None:
            self._committed()  # the statement committed on its own
        return written

    def _committed(self) -> None:
        events, self._uncommitted = self._uncommitted, []
        if events and self._on_commit is not None:
            self._on_commit(events)

    async def commit(self) -> None:
        """Commit the transaction ``begin()`` opened; without one, every write is already committed."""
        if self._tx is not None:
            await self._tx.commit()
            self._tx = None
            self._committed()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._conn is not None
        try:
            if isinstance(exc, INFRASTRUCTURE_ERRORS):
                self._conn.terminate()  # never hand a connection in an unknown state back to the pool
            elif self._tx is not None and not self._conn.is_closed():
                await self._tx.rollback()
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            pass  # the connection is broken; the server rolls back on its own
        finally:
            self._tx = None
            self._uncommitted = []
            await self._pool.release(self._conn)
            self._conn = None
