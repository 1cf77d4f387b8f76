"""The unit of work: one connection and one transaction that roll back unless committed."""

import uuid
from types import TracebackType
from typing import Protocol, Self

import asyncpg

from ..domain import Versioned
from ..transient import TRANSIENT_ERRORS
from .changes import NewEvent, write_changes
from .inbox import Key, ProcessedCommands
from .outplans import OutplanRepository


class UnitOfWork(Protocol):
    """What handlers see; several commands may later share one unit (one transaction)."""

    outplans: OutplanRepository
    inbox: ProcessedCommands

    async def write(self, *, inserted: list[Versioned], replaced: list[Versioned], events: list[NewEvent],
                    replies: list[tuple[Key, int, bytes]]) -> list[uuid.UUID]: ...

    async def commit(self) -> None: ...


class PgUnitOfWork:
    """``async with PgUnitOfWork(pool) as uow: ...; await uow.commit()``."""

    def __init__(self, pool: asyncpg.Pool, *, read_only: bool = False) -> None:
        self._pool = pool
        self._read_only = read_only  # one query needs no transaction: spare BEGIN and ROLLBACK
        self._conn: asyncpg.pool.PoolConnectionProxy | None = None
        self._tx: asyncpg.transaction.Transaction | None = None

    async def __aenter__(self) -> Self:
        self._conn = conn = await self._pool.acquire()
        try:
            if not self._read_only:
                self._tx = conn.transaction()
                await self._tx.start()
        except BaseException:
            await self._pool.release(conn)
            raise
        self.outplans = OutplanRepository(conn)
        self.inbox = ProcessedCommands(conn)
        return self

    async def write(self, *, inserted: list[Versioned], replaced: list[Versioned], events: list[NewEvent],
                    replies: list[tuple[Key, int, bytes]]) -> list[uuid.UUID]:
        assert self._conn is not None
        return await write_changes(self._conn, inserted=inserted, replaced=replaced, events=events, replies=replies)

    async def commit(self) -> None:
        assert self._tx is not None
        await self._tx.commit()
        self._tx = None

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._conn is not None
        try:
            if exc is not None and isinstance(exc, TRANSIENT_ERRORS):
                self._conn.terminate()  # never hand a connection in an unknown state back to the pool
            elif self._tx is not None and not self._conn.is_closed():
                await self._tx.rollback()
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            pass  # the connection is broken; the server rolls back on its own
        finally:
            self._tx = None
            await self._pool.release(self._conn)
            self._conn = None
