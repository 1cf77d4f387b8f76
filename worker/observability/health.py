"""The checks behind ``/livez`` and ``/readyz`` (and ``outplan-worker check``).

Liveness is the event loop's heartbeat: a loop blocked for 5 s or more is not alive. Readiness is
the consumer being subscribed (when this process consumes) and the outbox draining: PostgreSQL
answers within 2 s and the oldest unpublished event is younger than
``OUTPLAN_READY_MAX_OUTBOX_AGE_SECONDS``. A check never raises: an error it did not expect makes it
fail (``<check>_ok: false`` and ``<check>_error: <exception class>``), logged once until the
check passes again; PostgreSQL being away is expected, and not logged.
"""

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol

import asyncpg
import structlog

from ..persistence import outbox
from ..transient import TRANSIENT_ERRORS
from . import metrics

log = structlog.get_logger("outplan_worker")

LIVE_WITHIN_SECONDS = 5.0  # the heartbeat must be younger than this for /livez
DATABASE_SECONDS = 2.0  # how long the readiness check waits for PostgreSQL


class Consuming(Protocol):
    """What readiness needs of a consumer: whether it is subscribed now."""

    @property
    def attached(self) -> bool:
        """Subscribed on an open channel."""
        ...


class Health:
    """The health of one worker process: ``beat`` keeps the heartbeat, ``live``/``ready`` answer the
    probes with a JSON-able dict of checks, ``monitor`` keeps the gauges current.

    ``max_outbox_age_seconds`` (s): readiness fails once the oldest unpublished event is older.
    Not ready until ``attach`` gives it the pool (and the consumer, when this process consumes).
    """

    MONITOR_SECONDS = 5.0  # how often the monitor refreshes the gauges when nobody probes

    def __init__(self, max_outbox_age_seconds: float) -> None:
        self._max_outbox_age = max_outbox_age_seconds
        self._pool: asyncpg.Pool | None = None
        self._consumer: Callable[[], bool] | None = None
        self._started = False
        self.last_beat = asyncio.get_running_loop().time()
        self._failing: set[str] = set()  # checks failing on an unexpected error: logged, once

    def attach(self, pool: asyncpg.Pool, consumer: Consuming | None) -> None:
        """The worker is connected: check ``pool``'s database and, if given, ``consumer.attached``."""
        self._pool = pool
        self._consumer = (lambda: consumer.attached) if consumer is not None else None
        self._started = True

    def detach(self) -> None:
        """The worker is closing: not ready any more."""
        self._pool, self._consumer, self._started = None, None, False

    async def beat(self, stop: asyncio.Event) -> None:
        """Refresh the heartbeat every second until ``stop`` is set."""
        while not stop.is_set():
            self.last_beat = asyncio.get_running_loop().time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    async def live(self) -> dict[str, object]:
        """``{"loop_ok": bool, "heartbeat_age_seconds": float}``: the loop ran within 5 s."""
        age = asyncio.get_running_loop().time() - self.last_beat
        return {"loop_ok": age < LIVE_WITHIN_SECONDS, "heartbeat_age_seconds": round(age, 3)}

    async def ready(self) -> dict[str, object]:
        """``{"started_ok": false}`` before ``attach``; then ``consumer_ok``, ``database_ok``,
        ``outbox_ok`` with ``outbox_backlog`` (events) and ``outbox_oldest_age_seconds`` (s), and
        ``<check>_error`` naming the exception class of a check that failed on an error."""
        pool = self._pool
        if not self._started or pool is None:
            return {"started_ok": False}
        result: dict[str, object] = {}
        try:
            attached = self._consumer is None or self._consumer()
            metrics.CONSUMER_ATTACHED.set(1 if attached and self._consumer is not None else 0)
            result["consumer_ok"] = attached
            self._passed("consumer")
        except Exception as exc:  # noqa: BLE001  (any error fails the check; it must not escape)
            result.update(consumer_ok=False, consumer_error=type(exc).__name__)
            self._unexpected("consumer", exc)
        try:
            async with asyncio.timeout(DATABASE_SECONDS):
                backlog = await outbox.read_backlog(pool)
            metrics.OUTBOX_BACKLOG.set(backlog.events)
            metrics.OUTBOX_OLDEST_AGE.set(backlog.oldest_age_seconds)
            result.update(
                database_ok=True,
                outbox_backlog=backlog.events,
                outbox_oldest_age_seconds=round(backlog.oldest_age_seconds, 3),
                outbox_ok=backlog.oldest_age_seconds <= self._max_outbox_age,
            )
            self._passed("database")
        except TRANSIENT_ERRORS as exc:  # PostgreSQL away or slow (TimeoutError is one): expected, not logged
            result.update(database_ok=False, database_error=type(exc).__name__)
        except Exception as exc:  # noqa: BLE001  (any error fails the check; it must not escape)
            result.update(database_ok=False, database_error=type(exc).__name__)
            self._unexpected("database", exc)
        return result

    def _unexpected(self, check: str, exc: Exception) -> None:
        if check not in self._failing:
            self._failing.add(check)
            log.error(
                "readiness check failed unexpectedly; failing it until it passes",
                check=check,
                error=type(exc).__name__,
                detail=str(exc)[:200],
                exc_info=exc,
            )

    def _passed(self, check: str) -> None:
        if check in self._failing:
            self._failing.discard(check)
            log.info("readiness check passes again", check=check)

    async def monitor(self, stop: asyncio.Event) -> None:
        """Keep the gauges current even when nobody probes; outlives any error of a check."""
        while not stop.is_set():
            try:
                await self.ready()
                self._passed("monitor")
            except Exception as exc:  # noqa: BLE001  (ready() fails its checks instead of raising: a backstop)
                self._unexpected("monitor", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.MONITOR_SECONDS)
