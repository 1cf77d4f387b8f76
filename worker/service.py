"""Run requests through their handlers inside a unit of work, with the idempotency record.

Changes are executed in batches: one statement reads the outplans involved, the idempotency
records of the batch's message ids and the clock; the handlers apply the changes in arrival
order; one statement writes rows, events and records, and fails as a whole if a concurrent
writer got to one of those outplans or message ids first. The batch then runs again, inside a
transaction that locks its outplans first, so that under contention it is sure to go through.
A batch of one is the same code path.

A message_id seen before from the same customer is a repeat when the command means the same:
its record's hash is the request's fingerprint (``worker.requests.fingerprint``), or, for
records written before fingerprints, the hash of the raw body. New records hold the
fingerprint; the raw-body fallback can go once ``idempotency_retention_hours`` have passed
since the upgrade (``Request.is_recorded_as``).
"""

import asyncio
import random
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from uuid import UUID

from contracts.timefmt import NOT_DELETED, format_time

from .domain import ConcurrentChange, DomainError, IdempotencyKeyReused, Versioned
from .handlers import REGISTRY, Change, Context, Registry
from .observability import metrics
from .persistence.batch_write import NewEvent
from .persistence.inbox import IdempotencyRecord, Key
from .persistence.snapshot import Snapshot
from .persistence.uow import UnitOfWork
from .requests import Request

UowFactory = Callable[..., AbstractAsyncContextManager[UnitOfWork]]  # (read_only=False)
CONFLICT_RETRIES = 10


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one request ended, as the consumer answers it: the status code, the reply's exact bytes,
    and the outplan concerned when known (for logs; ``None`` e.g. for a list or a repeated create)."""

    status_code: int
    reply: bytes  # the JSON reply, byte for byte what was (or will be) sent
    outplan_id: UUID | None
    replayed: bool = False  # an earlier reply, given again for a repeated message_id


def success_reply(status_code: int, data: str) -> bytes:
    """The reply to an applied change: ``Reply(status_code=..., data=outplan).to_json()``, built
    around the outplan's JSON (``data``, the very text its event carries) instead of serialising
    the outplan a second time. ``tests/unit/test_wire_replies.py`` proves the two byte for byte
    equal; ``contracts.replies.Reply`` is the contract."""
    return b'{"status_code":%d,"data":%s}' % (status_code, data.encode())


def _refusal(exc: DomainError, outplan_id: UUID | None) -> Outcome:
    reply = exc.reply()
    return Outcome(reply.status_code, reply.to_json(), outplan_id)


class Service:
    """Runs requests through the handlers of ``handlers`` (``worker.handlers.REGISTRY`` by default).

    ``uow_factory(read_only=...)`` opens a unit of work. An exception a handler raises other than a
    ``DomainError`` (a refusal, answered) leaves ``query``, ``execute`` or ``change`` as it is, with
    nothing of the batch written: the consumer retries such a command, then dead-letters it.
    """

    def __init__(self, uow_factory: UowFactory, *, handlers: Registry = REGISTRY) -> None:
        self._uow_factory = uow_factory
        self._changes = handlers.changes
        self._queries = handlers.queries

    async def query(self, request: Request) -> Outcome:
        """Answer a query (``outplan.get``, ``outplan.list``) on a read-only unit of work; a
        ``DomainError`` is answered as its refusal. Raises ``KeyError`` for a command type the
        registry has no query handler for."""
        cmd = request.command
        outplan_id: UUID | None = getattr(cmd, "id", None)
        async with self._uow_factory(read_only=True) as uow:
            try:
                reply = await self._queries[type(cmd)](cmd, uow)
            except DomainError as exc:
                return _refusal(exc, outplan_id)
        return Outcome(reply.status_code, reply.to_json(), outplan_id)

    async def execute(self, request: Request) -> Outcome:
        """Run one request of either kind: a query by ``query``, a change as a batch of one."""
        if not request.command.mutates:
            return await self.query(request)
        return (await self.change([request]))[0]

    async def change(self, requests: Sequence[Request]) -> list[Outcome]:
        """Apply a batch of changes, atomically; one outcome per request, in order.

        The batch is read, applied and written again from the start when a concurrent writer
        changed one of its outplans (or recorded one of its message ids) in between: optimistically
        the first time, with its outplans locked after that. Raises ``ConcurrentChange`` (a
        transient error) after ``CONFLICT_RETRIES`` collisions in a row.
        """
        for attempt in range(CONFLICT_RETRIES):
            try:
                # Optimistic first; after a collision, lock the batch's outplans so it goes through.
                return await self._change(requests, lock=attempt > 0)
            except ConcurrentChange:
                metrics.WRITE_CONFLICTS.inc()
                if attempt == CONFLICT_RETRIES - 1:
                    raise  # transient: the consumer holds the batch and tries again later
                await asyncio.sleep(random.uniform(0, 0.002 * attempt))
        raise AssertionError("unreachable")

    async def _change(self, requests: Sequence[Request], *, lock: bool) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(requests)
        first: dict[Key, int] = {}
        for i, request in enumerate(requests):
            assert request.message_id is not None  # enforced when the request was decoded
            first.setdefault((request.command.customer_id, request.message_id), i)

        async with self._uow_factory() as uow:
            targets = [r.command.id for r in requests if hasattr(r.command, "id")]
            if lock:
                await uow.begin()
                await uow.lock(targets)
            snapshot = await uow.read(targets, list(first))
            fresh = []
            for key, i in first.items():
                request, stored = requests[i], snapshot.records.get(key)
                if stored is None:
                    fresh.append(i)
                elif stored.command != request.command.command or not request.is_recorded_as(
                    stored.body_hash
                ):
                    outcomes[i] = _refusal(IdempotencyKeyReused(key[1]), getattr(request.command, "id", None))
                else:
                    outcomes[i] = Outcome(
                        stored.status_code, stored.reply, getattr(request.command, "id", None), replayed=True
                    )
            if fresh:
                order = sorted(fresh)
                applied = await self._apply(uow, [requests[i] for i in order], snapshot)
                for i, outcome in zip(order, applied, strict=True):
                    outcomes[i] = outcome
                await uow.commit()

        # The same message_id twice in one batch: the later copy is a repeat of the first.
        for i, request in enumerate(requests):
            assert request.message_id is not None  # enforced when the request was decoded
            j = first[(request.command.customer_id, request.message_id)]
            if i != j:
                original = outcomes[j]
                assert original is not None
                same = (
                    requests[j].fingerprint == request.fingerprint
                    and requests[j].command.command == request.command.command
                )
                outcomes[i] = (
                    Outcome(original.status_code, original.reply, original.outplan_id, replayed=True)
                    if same
                    else _refusal(IdempotencyKeyReused(request.message_id or ""), None)
                )
        done = [outcome for outcome in outcomes if outcome is not None]
        assert len(done) == len(outcomes)
        return done

    async def _apply(self, uow: UnitOfWork, requests: list[Request], snapshot: Snapshot) -> list[Outcome]:
        ctx = Context(now=format_time(snapshot.moment))
        states = dict(snapshot.states)
        read_versions = {i: stored.version for i, stored in states.items()}
        created: dict[UUID, Versioned] = {}
        changed: dict[UUID, Versioned] = {}
        events: list[NewEvent] = []
        records: list[IdempotencyRecord] = []
        outcomes: list[Outcome] = []
        for request in requests:
            cmd = request.command
            outplan_id: UUID | None = getattr(cmd, "id", None)
            current = states.get(outplan_id) if outplan_id is not None else None
            if current is not None and (
                current.outplan.customer_id != cmd.customer_id or current.outplan.tm_delete != NOT_DELETED
            ):
                current = None  # another customer's, or deleted: as if it did not exist
            try:
                change: Change = self._changes[type(cmd)](cmd, current, ctx)
            except DomainError as exc:
                outcome = _refusal(exc, outplan_id)
            else:
                stored = change.stored
                states[stored.outplan.id] = stored
                (created if outplan_id is None else changed)[stored.outplan.id] = stored
                # The outplan's JSON, serialised once: the reply's and the event's ``data``.
                data = stored.outplan.model_dump_json()
                events.append(
                    NewEvent(
                        change.event_type,
                        stored,
                        request.message_id,
                        data,
                        request.traceparent,
                        request.tracestate,
                    )
                )
                body = success_reply(change.status_code, data)
                outcome = Outcome(change.status_code, body, stored.outplan.id)
            records.append(
                IdempotencyRecord(
                    (cmd.customer_id, request.message_id or ""),
                    cmd.command,
                    request.fingerprint,
                    outcome.status_code,
                    outcome.reply,
                )
            )
            outcomes.append(outcome)
        await uow.write(
            inserted=[states[i] for i in created],
            replaced=[s for i, s in changed.items() if i not in created],
            events=events,
            records=records,
            read_versions=read_versions,
            moment=snapshot.moment,
        )
        return outcomes
