"""The outbox relay: publishes the event log in ``eventsequence`` order, at least once.

Only one relay publishes at a time (a PostgreSQL advisory lock held by its connection);
others wait as standbys. An event is marked published only after the broker confirmed it
and it was routed (``mandatory``); after a crash the unconfirmed tail is published again
with the same ids and bodies.
"""

import asyncio
import contextlib

import asyncpg
import structlog
from aio_pika.abc import AbstractChannel, AbstractExchange

from ..observability import metrics
from ..persistence.events import NOTIFY_CHANNEL
from ..persistence.outbox import LoggedEvent, OutboxStore
from ..settings import Settings
from ..transient import TRANSIENT_ERRORS
from .republish import event_message

log = structlog.get_logger(__name__)


class RelayStalled(Exception):
    """A batch was not wholly confirmed; the next round starts at the first unconfirmed event."""


class Relay:
    def __init__(self, settings: Settings, channel: AbstractChannel) -> None:
        self._settings = settings
        self._channel = channel
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.published = 0
        self.is_leader = False
        self._check_unpublished = True

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Publish until ``stop()``; reconnects to the database and the broker on its own."""
        delay = 0.1
        while not self._stopping.is_set():
            try:
                await self._serve()
                delay = 0.1
                continue
            except (RelayStalled, *TRANSIENT_ERRORS) as exc:
                log.warning("relay interrupted; retrying", error=type(exc).__name__, detail=str(exc), retry_in=delay)
            except Exception as exc:  # the relay must outlive surprises, or the outbox silently fills up
                log.error("relay failed unexpectedly; restarting it", error=type(exc).__name__, retry_in=delay,
                          exc_info=exc)
            self.is_leader = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, 5.0)

    async def drain(self, timeout: float) -> bool:
        """Publish everything already committed (used at shutdown); False if time ran out."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        if await self._drain_once():
                            return True
                    except (RelayStalled, *TRANSIENT_ERRORS) as exc:
                        log.warning("outbox not yet published; retrying", error=type(exc).__name__)
                    await asyncio.sleep(0.2)
        except TimeoutError:
            log.warning("outbox not fully published before the drain timeout")
            return False

    async def _drain_once(self) -> bool:
        conn = await asyncpg.connect(self._settings.database_url.get_secret_value())
        try:
            store = OutboxStore(conn, source=self._settings.event_source)
            while not await store.try_lock():
                await asyncio.sleep(0.05)  # another relay holds it; wait for our turn
            exchange = await self._channel.get_exchange(self._settings.event_exchange, ensure=False)
            self._check_unpublished = True
            while await self._publish_round(store, exchange):
                pass
            return (await store.backlog())[0] == 0
        finally:
            conn.terminate()

    async def _serve(self) -> None:
        conn = await asyncpg.connect(self._settings.database_url.get_secret_value())
        try:
            await conn.add_listener(NOTIFY_CHANNEL, lambda *_: self._wake.set())
            store = OutboxStore(conn, source=self._settings.event_source)
            while not await store.try_lock():
                if await self._sleep():
                    return
            self.is_leader = True
            self._check_unpublished = True  # whatever the last holder left unconfirmed goes first
            metrics.RELAY_LEADER.set(1)
            log.info("relay is publishing")
            exchange = await self._channel.get_exchange(self._settings.event_exchange, ensure=False)
            while not self._stopping.is_set():
                self._wake.clear()
                if await self._publish_round(store, exchange):
                    continue  # more may be waiting: go again without sleeping
                if await self._sleep():
                    return
        finally:
            self.is_leader = False
            metrics.RELAY_LEADER.set(0)
            conn.terminate()  # closes at once; a graceful close could wait on a broken link

    async def _sleep(self) -> bool:
        """Wait for a notification or the polling interval; True when stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._settings.relay_poll_seconds)
        return self._stopping.is_set()

    async def _publish_round(self, store: OutboxStore, exchange: AbstractExchange) -> bool:
        """Publish one batch; True when a full batch went out (more may be waiting).

        Events sequenced earlier but never confirmed (a crash, a failed round) go first, with
        the numbers and bodies they already have; then newly committed events are sequenced.
        """
        limit = self._settings.relay_batch_size
        pending = await store.unpublished(limit) if self._check_unpublished else []
        if not pending:
            self._check_unpublished = False
            pending = await store.sequence_next(limit)
        if not pending:
            return False
        # Publishes go out in order on one channel; confirms are awaited together.
        results = await asyncio.gather(*(self._publish(exchange, e) for e in pending), return_exceptions=True)
        confirmed = 0
        for event, result in zip(pending, results, strict=True):
            if isinstance(result, BaseException):
                log.error(
                    "event not confirmed; publishing again from here",
                    eventsequence=event.eventsequence, event_id=event.event_id,
                    error=type(result).__name__, detail=str(result),
                )
                break
            confirmed += 1
        if confirmed:
            await store.mark_published(pending[confirmed - 1].eventsequence)
            self.published += confirmed
            for event in pending[:confirmed]:
                metrics.EVENTS_PUBLISHED.labels(event.event_type).inc()
        if confirmed < len(pending):
            self._check_unpublished = True
            raise RelayStalled(f"{len(pending) - confirmed} of {len(pending)} events not confirmed")
        return len(pending) == limit

    async def _publish(self, exchange: AbstractExchange, event: LoggedEvent) -> None:
        await exchange.publish(event_message(event), routing_key=event.event_type, mandatory=True)
