"""The outbox relay: publishes the event log, each outplan's events in order, at least once.

Only one relay publishes at a time (a PostgreSQL advisory lock held by its connection);
others wait as standbys. Events go out ``mandatory`` on a confirm channel, pipelined: up to
``relay_batch_size`` x 4 publishes await their confirms at once, one per outplan (``window``).
What the broker makes of each is an outcome of that event alone: confirmed, unrouted (no
binding matched: counted, not retried) or refused (``basic.nack``: re-published with backoff,
then given up and left to ``replay``). The checkpoint (``outbox_state.published_through``) is
the end of the settled prefix; after a crash or a change of leader the next relay publishes
again from there, with the same ids and bodies. A broken link restarts the relay likewise.

Events committed by this process are handed over by its writer (``hand_over``) and published
without being read back, when they continue exactly where publishing stands. Anything else
(another process's commits, a gap, a lost hand-over) is read from the log: commits notify
with the highest number they wrote, so the relay knows when the log holds more than it has.
"""

import asyncio
import collections
import contextlib
from collections.abc import Coroutine
from typing import Any

import asyncpg
import structlog
from aio_pika.abc import AbstractChannel
from tenacity import RetryCallState, retry_if_exception_type

from .. import refusals
from ..observability import metrics, spans
from ..persistence.outbox import NOTIFY_CHANNEL, LoggedEvent, OutboxStore
from ..retries import Stopped, failure, retry_in, retrying
from ..settings import Settings
from ..transient import TRANSIENT_ERRORS
from .amqp import Confirm, raw_channel
from .event_publishing import publish_event
from .window import PublishWindow, RetryPolicy, Tally

log = structlog.get_logger(__name__)

BATCHES_IN_FLIGHT = 4
HANDED_OVER_AT_MOST = 10_000
HELD_AT_MOST = 10_000  # events read past the checkpoint and kept in memory: on the wire, waiting, settled
SETTLE_WITHIN = 5.0  # s a stopping relay waits for the broker to answer the publishes on the wire


class Relay:
    """Publishes the outbox on ``channel`` (opened with publisher confirms) while it holds the lock."""

    def __init__(
        self, settings: Settings, channel: AbstractChannel, *, retry: RetryPolicy | None = None
    ) -> None:
        self._settings = settings
        self._channel = channel
        self._broker = spans.Peer.from_url(settings.amqp_url.get_secret_value(), 5672)  # for the spans
        self._tracing = spans.current()  # the provider is set (or not) before the worker starts
        self._retry = retry or RetryPolicy()
        self._wake = asyncio.Event()  # a commit, or the window asks for attention
        self._stopping = asyncio.Event()
        self._settle_within = SETTLE_WITHIN  # set again by stop()
        self.tally = Tally()
        self.is_leader = False
        self.left_to_leader = False  # set by drain() when another process's relay publishes the outbox
        self._lock_pid: int | None = None  # the server process that held the lock for this relay
        # Events this process committed, handed over by the writer: published without reading
        # them back. The highest number known to be committed tells when reading is needed.
        self._handed_over: collections.deque[LoggedEvent] = collections.deque()
        self._committed_through = 0
        self._read_log = True  # read the log on the next turn, whatever is known

    def hand_over(self, events: list[LoggedEvent]) -> None:
        """Events just committed by this process, in number order (the unit of work's ``on_commit``,
        wired in ``app.lifespan``). Ignored while this process is not the leading relay; past
        10,000 waiting (``HANDED_OVER_AT_MOST``) the queue is dropped and the log is read instead."""
        if not self.is_leader or not events:
            return
        if len(self._handed_over) > HANDED_OVER_AT_MOST:
            self._handed_over.clear()  # far behind: reading the log catches up just as well
        self._handed_over.extend(events)
        self._committed_through = max(self._committed_through, events[-1].eventsequence)
        self._wake.set()

    def _notified(self, payload: str) -> None:
        """A commit anywhere: its payload is the highest number it wrote."""
        try:
            self._committed_through = max(self._committed_through, int(payload))
        except ValueError:
            self._read_log = True
        self._wake.set()

    @property
    def published(self) -> int:
        """Events the broker took from this relay (confirmed, routed or not)."""
        return self.tally.confirmed + self.tally.unrouted

    def stop(self, settle_within: float = SETTLE_WITHIN) -> None:
        """Ask ``run`` to end: nothing more is sent, a wait ends at once, the events on the wire settle.

        The broker gets ``settle_within`` s (default 5) to answer the publishes on the wire; those
        still unanswered then are given up by this process and stay above the checkpoint, so the
        next publisher sends them again (at least once). A broker that never answers (a blocked
        connection, a link dead but not yet noticed) cannot hold a stopping worker past its drain.
        """
        self._settle_within = settle_within
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Publish until ``stop()``; reconnects to the database and the broker on its own.

        A permission refused for good (``refusals``) ends it, reported once: the worker stops.
        Any other ``Exception`` restarts it (the relay must outlive surprises, or the outbox silently
        fills up) after a wait of 0.1 s doubling to 5 s, jittered, that ends at once on ``stop()``;
        should ``_serve`` return without an error, the next wait starts again from 0.1 s.
        """
        with contextlib.suppress(Stopped):
            while not self._stopping.is_set():
                async for attempt in retrying(
                    first=0.1,
                    most=5.0,
                    retry=retry_if_exception_type(Exception),
                    before_sleep=self._log_restart,
                    stop=self._stopping,
                ):
                    with attempt:
                        try:
                            await self._serve()  # it stops leading (is_leader False) whichever way it ends
                        except Exception as exc:
                            if self._refused(exc):
                                return
                            raise

    def _refused(self, exc: BaseException) -> bool:
        """True when ``exc`` is a permission refused for good (publishing to the events exchange, a
        privilege of the database role): reported once, it stops the worker instead of a restart."""
        events = f"exchange {self._settings.event_exchange!r}"
        return refusals.report(
            refusals.broker_refusal(exc, "basic.publish", events) or refusals.database_refusal(exc)
        )

    @staticmethod
    def _log_restart(retry_state: RetryCallState) -> None:
        exc = failure(retry_state)
        if isinstance(exc, TRANSIENT_ERRORS):
            log.warning(
                "relay interrupted; retrying",
                error=type(exc).__name__,
                detail=str(exc),
                retry_in=retry_in(retry_state),
            )
        else:
            log.error(
                "relay failed unexpectedly; restarting it",
                error=type(exc).__name__,
                retry_in=retry_in(retry_state),
                exc_info=exc,
            )

    async def drain(self, timeout: float) -> bool:
        """Publish everything already committed (used at shutdown, after ``stop()``).

        True when nothing is left for this process to publish: the outbox is settled, or another
        process's relay holds the lock and publishes it (then ``left_to_leader`` is True). False if
        ``timeout`` (s) ran out first.
        """
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        if await self._drain_once():
                            return True
                    except TRANSIENT_ERRORS as exc:
                        log.warning("outbox not yet published; retrying", error=type(exc).__name__)
                    await asyncio.sleep(0.2)
        except TimeoutError:
            log.warning("outbox not fully published before the drain timeout")
            return False

    async def _drain_once(self) -> bool:
        conn = await asyncpg.connect(self._settings.database_url.get_secret_value())
        try:
            store = OutboxStore(conn)
            await store.use_async_commit()
            while not await store.try_lock():
                holder = await store.lock_holder()
                if holder is not None and holder != self._lock_pid:
                    log.info("another process's relay holds the lock; it publishes the outbox")
                    self.left_to_leader = True
                    return True
                await asyncio.sleep(0.02)  # our own relay's connection is still letting go of it
            await self._pump(store, until_empty=True)
            return (await store.backlog()).events == 0
        finally:
            conn.terminate()

    async def _serve(self) -> None:
        conn = await asyncpg.connect(self._settings.database_url.get_secret_value())
        try:
            await conn.add_listener(NOTIFY_CHANNEL, lambda *args: self._notified(args[-1]))
            store = OutboxStore(conn)
            await store.use_async_commit()
            while not await store.try_lock():
                if await self._sleep():
                    return
            self._handed_over.clear()
            self._committed_through, self._read_log = 0, True
            self._lock_pid = conn.get_server_pid()
            self.is_leader = True
            metrics.RELAY_LEADER.set(1)
            log.info("relay is publishing")
            await self._pump(store, until_empty=False)
        finally:
            self.is_leader = False
            self._handed_over.clear()
            metrics.RELAY_LEADER.set(0)
            conn.terminate()  # closes at once; a graceful close could wait on a broken link

    async def _sleep(self) -> bool:
        """Wait for a notification or the polling interval; True when stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._settings.relay_poll_seconds)
        return self._stopping.is_set()

    async def _pump(self, store: OutboxStore, *, until_empty: bool) -> None:
        """Publish and settle until stopped (or, with ``until_empty``, until the outbox is settled).

        It starts after the checkpoint: whatever the last publisher left unsettled goes first.
        Raises what broke the link (a publish's error, or the database's).
        """
        limit = self._settings.relay_batch_size
        budget = limit * BATCHES_IN_FLIGHT
        channel = await raw_channel(self._channel)
        exchange = self._settings.event_exchange

        def publish(event: LoggedEvent) -> Coroutine[Any, Any, Confirm]:
            # On the latest channel read.
            return publish_event(
                channel, exchange, event.event_type, event, broker=self._broker, tracing=self._tracing
            )

        window = PublishWindow(
            publish,
            self._wake.set,
            self.tally,
            retry=self._retry,
            low_water=budget - limit,
            high_water=HELD_AT_MOST - limit,
        )
        cursor = await store.checkpoint()  # the last event read, settled or not
        loop = asyncio.get_running_loop()
        settle_by: float | None = None  # loop time, once stopping
        try:
            while True:
                self._wake.clear()
                if window.failure is not None:
                    await self._save_checkpoint(store, window.take_settled())
                    raise window.failure
                checkpoint = window.take_settled()
                stopping = self._stopping.is_set() and not until_empty
                fetched: list[LoggedEvent] = []
                room = min(limit, HELD_AT_MOST - len(window))
                if stopping:
                    window.stop_sending()
                    if settle_by is None:
                        settle_by = loop.time() + self._settle_within
                elif window.in_flight + limit <= budget and room > 0:
                    fetched = self._take_handed_over(cursor, room)
                    if not fetched and (until_empty or self._read_log or self._committed_through > cursor):
                        self._read_log = False
                        fetched = await store.after(cursor, room, checkpoint=checkpoint)
                        checkpoint = None  # saved by the same statement
                    if fetched:
                        cursor = fetched[-1].eventsequence
                        channel = await raw_channel(self._channel)
                        window.add(fetched)
                await self._save_checkpoint(store, checkpoint)
                if len(fetched) == limit:
                    continue  # more are waiting: keep the pipeline full
                if (stopping and window.in_flight == 0) or (until_empty and not fetched and not len(window)):
                    return
                if settle_by is not None and loop.time() >= settle_by:
                    log.warning(
                        "stopping with publishes the broker has not answered; the next publisher "
                        "sends them again",
                        unanswered=window.in_flight,
                        waited_seconds=self._settle_within,
                    )
                    return
                wait = None if settle_by is None else max(0.0, settle_by - loop.time())
                if not await self._wait(wait):
                    self._read_log = (
                        True  # nothing for a poll interval: read, in case a notification was lost
                    )
        finally:
            # Published, not known to be settled: the next leader publishes them again.
            await window.closed()

    @staticmethod
    async def _save_checkpoint(store: OutboxStore, checkpoint: int | None) -> None:
        if checkpoint is not None:
            await store.save_checkpoint(checkpoint)

    def _take_handed_over(self, cursor: int, limit: int) -> list[LoggedEvent]:
        """Handed-over events that continue right after ``cursor``; none if one is missing between."""
        handed_over = self._handed_over
        while handed_over and handed_over[0].eventsequence <= cursor:
            handed_over.popleft()  # read from the log already
        taken: list[LoggedEvent] = []
        while handed_over and len(taken) < limit and handed_over[0].eventsequence == cursor + len(taken) + 1:
            taken.append(handed_over.popleft())
        return taken

    async def _wait(self, at_most: float | None = None) -> bool:
        """Until a commit or the window asks for attention; False after the poll interval (or
        ``at_most`` s, when shorter)."""
        seconds = (
            self._settings.relay_poll_seconds
            if at_most is None
            else min(at_most, self._settings.relay_poll_seconds)
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
                return True
        return False
