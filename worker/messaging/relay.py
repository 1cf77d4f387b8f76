"""The outbox relay: publishes the event log in ``eventsequence`` order, at least once.

Only one relay publishes at a time (a PostgreSQL advisory lock held by its connection);
others wait as standbys. An event is marked published only after the broker confirmed it
and it was routed (``mandatory``); after a crash the unconfirmed tail is published again
with the same ids and bodies.

Rounds are pipelined: while the broker confirms one round, the next is already read
and on the wire (all on one channel, so in order). Rounds are retired strictly in order, and
the published mark never passes an event that was not confirmed.

Events committed by this process are handed over by its writer (``offer``) and published
without being read back, when they continue exactly where publishing stands. Anything else
(another process's commits, a gap, a lost hand-over) is read from the log: commits notify
with the highest number they wrote, so the relay knows when the log holds more than it has.
"""

import asyncio
import collections
import contextlib
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog
from aio_pika.abc import AbstractChannel
from aiormq.abc import AbstractChannel as Underlay

from ..observability import metrics
from ..persistence.events import NOTIFY_CHANNEL
from ..persistence.outbox import LoggedEvent, OutboxStore
from ..settings import Settings
from ..transient import TRANSIENT_ERRORS
from .republish import publish_event

log = structlog.get_logger(__name__)

ROUNDS_IN_FLIGHT = 4
OFFERED_AT_MOST = 10_000


class RelayStalled(Exception):
    """A round was not wholly confirmed; the next start goes back to the first unconfirmed event."""


@dataclass
class _Round:
    events: list[LoggedEvent]
    publishes: list["asyncio.Future[object]"]
    finished: "asyncio.Future[list[object]]" = field(init=False)

    def __post_init__(self) -> None:
        self.finished = asyncio.gather(*self.publishes, return_exceptions=True)

    def confirmed(self) -> int:
        """How many events, from the first, the broker confirmed."""
        for i, publish in enumerate(self.publishes):
            if publish.cancelled() or publish.exception() is not None:
                return i
        return len(self.publishes)

    def failure(self) -> BaseException | None:
        n = self.confirmed()
        if n == len(self.publishes):
            return None
        publish = self.publishes[n]
        return asyncio.CancelledError() if publish.cancelled() else publish.exception()


class Relay:
    def __init__(self, settings: Settings, channel: AbstractChannel) -> None:
        self._settings = settings
        self._channel = channel
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.published = 0
        self.is_leader = False
        # Events this process committed, handed over by the writer: published without reading
        # them back. The highest number known to be committed tells when reading is needed.
        self._offered: collections.deque[LoggedEvent] = collections.deque()
        self._committed_through = 0
        self._look = True  # read the log on the next turn, whatever is known

    def offer(self, events: list[LoggedEvent]) -> None:
        """Events just committed by this process, in number order."""
        if not self.is_leader or not events:
            return
        if len(self._offered) > OFFERED_AT_MOST:
            self._offered.clear()  # far behind: reading the log catches up just as well
        self._offered.extend(events)
        self._committed_through = max(self._committed_through, events[-1].eventsequence)
        self._wake.set()

    def _notified(self, payload: str) -> None:
        """A commit anywhere: its payload is the highest number it wrote."""
        try:
            self._committed_through = max(self._committed_through, int(payload))
        except ValueError:
            self._look = True
        self._wake.set()

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
            store = OutboxStore(conn)
            await store.relax_marks()
            while not await store.try_lock():
                await asyncio.sleep(0.05)  # another relay holds it; wait for our turn
            await self._pump(store, until_empty=True)
            return (await store.backlog())[0] == 0
        finally:
            conn.terminate()

    async def _serve(self) -> None:
        conn = await asyncpg.connect(self._settings.database_url.get_secret_value())
        try:
            await conn.add_listener(NOTIFY_CHANNEL, lambda *args: self._notified(args[-1]))
            store = OutboxStore(conn)
            await store.relax_marks()
            while not await store.try_lock():
                if await self._sleep():
                    return
            self._offered.clear()
            self._committed_through, self._look = 0, True
            self.is_leader = True
            metrics.RELAY_LEADER.set(1)
            log.info("relay is publishing")
            await self._pump(store, until_empty=False)
        finally:
            self.is_leader = False
            self._offered.clear()
            metrics.RELAY_LEADER.set(0)
            conn.terminate()  # closes at once; a graceful close could wait on a broken link

    async def _sleep(self) -> bool:
        """Wait for a notification or the polling interval; True when stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._settings.relay_poll_seconds)
        return self._stopping.is_set()

    async def _pump(self, store: OutboxStore, *, until_empty: bool) -> None:
        """Publish and retire rounds until stopped (or, with ``until_empty``, drained).

        It starts after the watermark: whatever the last publisher left unconfirmed goes first.
        """
        limit = self._settings.relay_batch_size
        window: collections.deque[_Round] = collections.deque()
        cursor = await store.published_through()  # the last event read, confirmed or not
        try:
            while True:
                self._wake.clear()
                mark, failure = self._retire(window)
                if failure is not None:
                    if mark is not None:
                        await store.mark_published(mark)
                    raise RelayStalled(failure)
                stopping = self._stopping.is_set() and not until_empty
                fetched: list[LoggedEvent] = []
                if len(window) < ROUNDS_IN_FLIGHT and not stopping:
                    fetched = self._take_offered(cursor, limit)
                    if not fetched and (until_empty or self._look or self._committed_through > cursor):
                        self._look = False
                        fetched = await store.after(cursor, limit, mark_published=mark)
                        mark = None  # marked by the same statement
                    if fetched:
                        cursor = fetched[-1].eventsequence
                        channel = await self._channel.get_underlay_channel()
                        window.append(self._publish(channel, fetched))
                if mark is not None:
                    await store.mark_published(mark)
                if len(fetched) == limit:
                    continue  # more are waiting: keep the pipeline full
                if not window and (stopping or (until_empty and not fetched)):
                    return
                if not await self._wait(window, until_empty or stopping):
                    self._look = True  # nothing for a poll interval: read, in case a notification was lost
        finally:
            for round_ in window:  # published, not known to be confirmed: the next leader repeats them
                for publish in round_.publishes:
                    publish.cancel()
            await asyncio.gather(*(r.finished for r in window), return_exceptions=True)

    def _take_offered(self, cursor: int, limit: int) -> list[LoggedEvent]:
        """Offered events that continue right after ``cursor``; none if one is missing between."""
        offered = self._offered
        while offered and offered[0].eventsequence <= cursor:
            offered.popleft()  # read from the log already
        taken: list[LoggedEvent] = []
        while offered and len(taken) < limit and offered[0].eventsequence == cursor + len(taken) + 1:
            taken.append(offered.popleft())
        return taken

    def _publish(self, channel: Underlay, events: list[LoggedEvent]) -> _Round:
        exchange = self._settings.event_exchange
        return _Round(events, [asyncio.ensure_future(publish_event(channel, exchange, e.event_type, e))
                               for e in events])

    def _retire(self, window: "collections.deque[_Round]") -> tuple[int | None, str | None]:
        """Take finished rounds off the head: the last sequence confirmed without a gap, and a failure."""
        mark = None
        while window and window[0].finished.done():
            round_ = window.popleft()
            confirmed = round_.confirmed()
            if confirmed:
                mark = round_.events[confirmed - 1].eventsequence
                self.published += confirmed
                for event in round_.events[:confirmed]:
                    metrics.EVENTS_PUBLISHED.labels(event.event_type).inc()
            if confirmed < len(round_.events):
                failed, error = round_.events[confirmed], round_.failure()
                log.error(
                    "event not confirmed; publishing again from here",
                    eventsequence=failed.eventsequence, event_id=failed.event_id,
                    error=type(error).__name__, detail=str(error),
                )
                return mark, f"{len(round_.events) - confirmed} of {len(round_.events)} events not confirmed"
        return mark, None

    async def _wait(self, window: "collections.deque[_Round]", confirms_only: bool) -> bool:
        """Until something changes (a commit, the oldest round confirmed); False after the poll interval."""
        waits: list[asyncio.Future[Any]] = [window[0].finished] if window else []
        wake = None if confirms_only else asyncio.ensure_future(self._wake.wait())
        if wake is not None:
            waits.append(wake)
        try:
            done, _ = await asyncio.wait(waits, timeout=self._settings.relay_poll_seconds,
                                         return_when=asyncio.FIRST_COMPLETED)
            return bool(done)
        finally:
            if wake is not None:
                wake.cancel()
