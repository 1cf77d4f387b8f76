"""The relay's events between the checkpoint and the log's end: on the wire, backing off or waiting.

Each outplan has its own queue: at most one of its events is unsettled on the wire (or backing off
after a ``basic.nack``); its later events wait behind it, so per-outplan order holds while other
outplans' events keep flowing. An event is settled when the broker confirmed it, returned it
unrouted, or refused it ``1 + retries`` times (given up). The checkpoint is the end of the
settled prefix: ``take_settled()`` takes that prefix off the window.

Refusals that go on (a subscriber queue that stays full, a queue that stays down) are told from
a passing one by time: once events have been refused for ``RetryPolicy.ongoing_after`` seconds
without a pause as long, or once an event used up its retries, refusals are *ongoing*: every
event refused from then on is given up at once, without holding its outplan back, until no event
has been refused for ``RetryPolicy.quiet_after`` seconds. One ERROR line says when refusals
become ongoing; the events given up are summed up in one ERROR line every
``RetryPolicy.report_every`` seconds and when the refusals end, each with the range of event
numbers to replay to the refusing subscriber. So a subscriber that refuses everything holds the
others back for about ``ongoing_after`` plus one retry delay, and costs the log a line every half
minute.
"""

import asyncio
import collections
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from ..observability import metrics
from ..persistence.outbox import LoggedEvent
from .amqp import Confirm

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """Re-publishes of a refused event: at most ``retries``, after ``first_delay`` s, doubling, ±20 %.

    Refusals ``ongoing_after`` s apart or closer count as one burst, and a burst that lasts
    ``ongoing_after`` s is taken as ongoing: then a refused event is given up at once (see the
    module's docstring). So a lone refused event is given up after its third re-publish (about
    0.5 + 1 + 2 = 3.5 s, when those come within ``ongoing_after`` of each other) or after the whole
    schedule (about 0.5 + 1 + 2 + 4 + 8 = 15.5 s).
    """

    retries: int = 5
    first_delay: float = 0.5
    ongoing_after: float = 2.0  # s of refusals without a pause as long before they are taken as ongoing
    quiet_after: float = 10.0  # s without a refusal before refusals are taken to have ended
    report_every: float = 30.0  # s between summary lines while refusals are ongoing

    def delay(self, refusals: int) -> float:
        """Seconds before the re-publish that follows the ``refusals``-th refusal (1-based)."""
        return self.first_delay * 2.0 ** (refusals - 1) * random.uniform(0.8, 1.2)


@dataclass
class Tally:
    """What the broker made of the events a relay published (re-publishes counted once each)."""

    confirmed: int = 0
    unrouted: int = 0
    refused: int = 0  # nacks, every one
    given_up: int = 0


@dataclass
class _Ongoing:
    """Events given up at once while refusals are ongoing, since the last summary line."""

    last_refusal: float
    reported_at: float
    count: int = 0
    first: int | None = None  # eventsequence
    last: int | None = None

    def add(self, event: LoggedEvent, now: float) -> None:
        self.last_refusal = now
        self.count += 1
        self.first = event.eventsequence if self.first is None else min(self.first, event.eventsequence)
        self.last = event.eventsequence if self.last is None else max(self.last, event.eventsequence)

    def report(self, now: float) -> None:
        """One ERROR line for the events given up since the last one (none: no line)."""
        if self.count:
            log.error(
                "events refused by the broker and left to replay",
                events=self.count,
                from_seq=self.first,
                to_seq=self.last,
                replay=f"outplan-worker replay --from-seq {self.first} --to-seq {self.last} "
                "--queue <the refusing subscriber's queue>",
            )
        self.reported_at, self.count, self.first, self.last = now, 0, None, None


class _Entry:
    __slots__ = ("event", "sent", "settled")

    def __init__(self, event: LoggedEvent) -> None:
        self.event = event
        self.sent = 0  # publishes so far
        self.settled = False


Publish = Callable[[LoggedEvent], Coroutine[Any, Any, Confirm]]


class PublishWindow:
    """Publishes events added in number order, one per outplan at a time; settles and retries them.

    ``publish`` raises when the link breaks; the first such error is kept in ``failure`` and
    nothing more is sent. ``notify`` is called when the pump may act: a failure, the wire down to
    ``low_water`` publishes or to none, or the head settling while the window is at ``high_water`` events.
    """

    def __init__(
        self,
        publish: Publish,
        notify: Callable[[], None],
        tally: Tally,
        *,
        retry: RetryPolicy,
        low_water: int,
        high_water: int,
    ) -> None:
        self._publish = publish
        self._notify = notify
        self._tally = tally
        self._retry = retry
        self._low_water, self._high_water = low_water, high_water
        self._held: collections.deque[_Entry] = collections.deque()
        self._by_outplan: dict[str, collections.deque[_Entry]] = {}  # outplan id -> its unsettled events
        self._tasks: set[asyncio.Task[Confirm]] = set()
        self._timers: dict[_Entry, asyncio.TimerHandle] = {}  # refused events waiting to go again
        self._ongoing: _Ongoing | None = None  # set while refusals are ongoing
        self._burst_started = self._last_refusal = float("-inf")  # loop time, of refusals not yet ongoing
        self._quiet_check: asyncio.TimerHandle | None = None
        self._sending = True
        self.in_flight = 0
        self.failure: BaseException | None = None

    def __len__(self) -> int:
        return len(self._held)

    def add(self, events: list[LoggedEvent]) -> None:
        """Events read after the last one added, in number order."""
        for event in events:
            entry = _Entry(event)
            self._held.append(entry)
            queue = self._by_outplan.get(event.outplan_id)
            if queue is not None:
                queue.append(entry)  # waits behind the unsettled one
            else:
                self._by_outplan[event.outplan_id] = collections.deque((entry,))
                self._send(entry)

    def take_settled(self) -> int | None:
        """Take the settled prefix off; the new checkpoint (highest ``eventsequence``), or None."""
        last = None
        while self._held and self._held[0].settled:
            last = self._held.popleft().event.eventsequence
        return last

    def stop_sending(self) -> None:
        """Publish nothing more (no waiting event, no re-publish); what is on the wire still settles."""
        self._sending = False

    def close(self) -> None:
        """Cancel the publishes and re-publishes not yet answered: they stay above the checkpoint."""
        self._sending = False
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._quiet_check is not None:
            self._quiet_check.cancel()
        if self._ongoing is not None:
            self._ongoing.report(0.0)
            self._ongoing = None
        for task in self._tasks:
            task.cancel()

    async def closed(self) -> None:
        """``close()``, then wait until every cancelled publish has ended."""
        self.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _send(self, entry: _Entry) -> None:
        if not self._sending or self.failure is not None:
            return
        entry.sent += 1
        self.in_flight += 1
        task = asyncio.ensure_future(self._publish(entry.event))
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._answered(entry, done))

    def _answered(self, entry: _Entry, task: "asyncio.Task[Confirm]") -> None:
        self._tasks.discard(task)
        self.in_flight -= 1
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            if self.failure is None:
                self.failure = error
            self._notify()
            return
        outcome = task.result()
        if outcome is Confirm.REFUSED:
            self._refused(entry)
        else:
            self._settle(entry, outcome)
        if self.in_flight in (self._low_water, 0):
            self._notify()  # once per crossing: a wake per confirm would cost more than the publish

    def _refused(self, entry: _Entry) -> None:
        event, refusals = entry.event, entry.sent
        self._tally.refused += 1
        metrics.EVENTS_REFUSED.labels(event.event_type).inc()
        now = asyncio.get_running_loop().time()
        if self._ongoing is not None:  # refusals are ongoing: leave it to replay at once
            self._ongoing.add(event, now)
            if now - self._ongoing.reported_at >= self._retry.report_every:
                self._ongoing.report(now)
            log.debug(
                "event refused by the broker while refusals are ongoing; left to replay",
                eventsequence=event.eventsequence,
                type=event.event_type,
                outplan_id=event.outplan_id,
            )
            self._give_up(entry)
            return
        if now - self._last_refusal > self._retry.ongoing_after:
            self._burst_started = now  # a new burst of refusals
        self._last_refusal = now
        refusing_for = now - self._burst_started
        if refusals > self._retry.retries or refusing_for >= self._retry.ongoing_after:
            log.error(
                "events refused by the broker; refusals are ongoing: refused events are left to replay",
                refusing_for_seconds=round(refusing_for, 1),
                eventsequence=event.eventsequence,
                event_id=event.event_id,
                type=event.event_type,
                outplan_id=event.outplan_id,
                until=f"none is refused for {self._retry.quiet_after:g} s; a summary with the range "
                f"to replay follows every {self._retry.report_every:g} s",
            )
            self._ongoing = _Ongoing(last_refusal=now, reported_at=now)
            self._ongoing.add(event, now)
            self._schedule_quiet_check(self._retry.quiet_after)
            self._give_up(entry)
            return
        delay = self._retry.delay(refusals)
        # One line per burst, not per event or retry: a full subscriber queue refuses every event.
        (log.warning if refusals == 1 and not self._timers else log.debug)(
            "event refused by the broker (basic.nack); publishing it again",
            eventsequence=event.eventsequence,
            event_id=event.event_id,
            type=event.event_type,
            outplan_id=event.outplan_id,
            retry_in=round(delay, 3),
            retries_left=self._retry.retries - refusals + 1,
        )
        self._timers[entry] = asyncio.get_running_loop().call_later(delay, self._again, entry)

    def _give_up(self, entry: _Entry) -> None:
        self._tally.given_up += 1
        metrics.EVENTS_GIVEN_UP.labels(entry.event.event_type).inc()
        self._settle(entry, None)

    def _schedule_quiet_check(self, delay: float) -> None:
        self._quiet_check = asyncio.get_running_loop().call_later(delay, self._check_quiet)

    def _check_quiet(self) -> None:
        """Refusals end once none came for ``quiet_after`` s: report the last summary, retry again."""
        ongoing = self._ongoing
        if ongoing is None:
            return
        now = asyncio.get_running_loop().time()
        quiet_for = now - ongoing.last_refusal
        if quiet_for < self._retry.quiet_after:
            if now - ongoing.reported_at >= self._retry.report_every:
                ongoing.report(now)
            self._schedule_quiet_check(self._retry.quiet_after - quiet_for)
            return
        ongoing.report(now)
        self._ongoing = None
        log.info(
            "no event refused for a while; refused events are retried again",
            quiet_seconds=round(quiet_for, 1),
        )

    def _again(self, entry: _Entry) -> None:
        del self._timers[entry]
        self._send(entry)

    def _settle(self, entry: _Entry, outcome: Confirm | None) -> None:
        entry.settled = True
        event = entry.event
        if outcome is Confirm.CONFIRMED:
            self._tally.confirmed += 1
            metrics.EVENTS_PUBLISHED.labels(event.event_type).inc()
        elif outcome is Confirm.UNROUTED:
            self._tally.unrouted += 1
            metrics.EVENTS_UNROUTED.labels(event.event_type).inc()
            log.debug("event matched no binding", eventsequence=event.eventsequence, type=event.event_type)
        queue = self._by_outplan[event.outplan_id]
        queue.popleft()
        if queue:
            self._send(queue[0])
        else:
            del self._by_outplan[event.outplan_id]
        if self._held[0] is entry and len(self._held) >= self._high_water:
            self._notify()  # the pump waits for room
