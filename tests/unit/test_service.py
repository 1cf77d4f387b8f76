"""Handlers and the idempotency rules, driven through the service with an in-memory unit of work."""

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from tests.support.commands import CUSTOMER, create_body, request
from tests.support.faulty_worker import FAULTY_REGISTRY, MARKER, InjectedFault
from worker.domain import ConcurrentChange, Versioned
from worker.persistence.batch_write import NewEvent
from worker.persistence.inbox import IdempotencyRecord
from worker.persistence.outbox import LoggedEvent
from worker.persistence.snapshot import Snapshot
from worker.service import Service, UowFactory

pytestmark = pytest.mark.unit


class FakeUnitOfWork:
    """An in-memory store: what was written, and how often the service committed."""

    def __init__(self) -> None:
        self.rows: dict[UUID, Versioned] = {}
        self.records: dict[tuple[UUID, str], IdempotencyRecord] = {}
        self.recorded: list[tuple[str, int, str | None]] = []
        self.commits = 0
        self.begun = 0

    async def begin(self) -> None:
        self.begun += 1

    async def lock(self, ids: list[UUID]) -> None:
        pass

    async def read(self, ids: list[UUID], keys: list[tuple[UUID, str]]) -> Snapshot:
        return Snapshot(
            {i: self.rows[i] for i in ids if i in self.rows},
            {k: self.records[k] for k in keys if k in self.records},
            datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        )

    async def write(
        self,
        *,
        inserted: list[Versioned],
        replaced: list[Versioned],
        events: list[NewEvent],
        records: list[IdempotencyRecord],
        read_versions: dict[UUID, int],
        moment: datetime,
    ) -> list[LoggedEvent]:
        for stored in inserted:
            assert stored.outplan.id not in self.rows
            self.rows[stored.outplan.id] = stored
        for stored in replaced:
            assert self.rows[stored.outplan.id].version == read_versions[stored.outplan.id]
            self.rows[stored.outplan.id] = stored
        for r in records:
            assert r.key not in self.records
            self.records[r.key] = r
        self.recorded += [(e.event_type, e.stored.version, e.correlation_id) for e in events]
        return [
            LoggedEvent(
                len(self.recorded) - len(events) + n + 1,
                str(uuid.uuid4()),
                e.event_type,
                e.correlation_id,
                b"",
                str(e.stored.outplan.id),
            )
            for n, e in enumerate(events)
        ]

    async def commit(self) -> None:
        self.commits += 1


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


def opens(uow: FakeUnitOfWork) -> UowFactory:
    """A unit-of-work factory that always opens ``uow``."""

    @asynccontextmanager
    async def factory(read_only: bool = False) -> AsyncIterator[Any]:
        yield uow

    return factory


@pytest.fixture
def service(uow: FakeUnitOfWork) -> Service:
    return Service(opens(uow))


CREATE = create_body(name="n")


async def test_create_records_one_event_and_commits(service: Service, uow: FakeUnitOfWork) -> None:
    outcome = await service.execute(request("outplan.create", CREATE, "m-1"))
    reply = json.loads(outcome.reply)
    assert outcome.status_code == 201 and reply["data"]["name"] == "n"
    assert uow.recorded == [("outplan_created", 1, "m-1")]
    assert uow.commits == 1 and str(outcome.outplan_id) == reply["data"]["id"]


async def test_a_repeated_message_id_gets_the_original_reply_and_no_event(
    service: Service, uow: FakeUnitOfWork
) -> None:
    first = await service.execute(request("outplan.create", CREATE, "m-1"))
    again = await service.execute(request("outplan.create", CREATE, "m-1"))
    assert again.reply == first.reply and again.replayed and again.status_code == 201
    assert len(uow.rows) == 1 and len(uow.recorded) == 1


async def test_a_reused_message_id_with_another_body_is_409(service: Service, uow: FakeUnitOfWork) -> None:
    await service.execute(request("outplan.create", CREATE, "m-1"))
    outcome = await service.execute(request("outplan.create", {**CREATE, "name": "other"}, "m-1"))
    reply = json.loads(outcome.reply)
    assert outcome.status_code == 409 and reply["error"]["reason"] == "IDEMPOTENCY_KEY_REUSED"
    assert len(uow.rows) == 1 and len(uow.recorded) == 1


# CREATE as another producer writes it: other key order, indented, upper-case UUID, a default sent.
CREATE_SPELLED_OTHERWISE = json.dumps(
    {
        "source": {"target": "+15559876543", "type": "tel"},
        "name": "n",
        "dial_timeout": 30000,
        "customer_id": CUSTOMER.upper(),
    },
    indent=2,
)


async def test_a_retry_spelled_otherwise_gets_the_original_reply(
    service: Service, uow: FakeUnitOfWork
) -> None:
    first = await service.execute(request("outplan.create", CREATE, "m-1"))
    again = await service.execute(request("outplan.create", CREATE_SPELLED_OTHERWISE, "m-1"))
    assert again.replayed and again.status_code == 201 and again.reply == first.reply
    assert len(uow.rows) == 1 and len(uow.recorded) == 1


async def test_the_same_message_id_spelled_otherwise_in_one_batch_is_one_command(
    service: Service,
    uow: FakeUnitOfWork,
) -> None:
    first, again = await service.change(
        [request("outplan.create", CREATE, "m-1"), request("outplan.create", CREATE_SPELLED_OTHERWISE, "m-1")]
    )
    assert first.status_code == 201 and again.replayed and again.reply == first.reply
    assert len(uow.rows) == 1 and len(uow.recorded) == 1


async def test_a_record_written_before_fingerprints_still_replays(
    service: Service, uow: FakeUnitOfWork
) -> None:
    # Records from before the upgrade hold sha256 of the command name, a NUL and the raw body.
    body = json.dumps(CREATE)
    original = b'{"status_code":201,"data":{"id":"the reply sent before the upgrade"}}'
    old_hash = hashlib.sha256(b"outplan.create\0" + body.encode()).digest()
    key = (uuid.UUID(CUSTOMER), "m-old")
    uow.records[key] = IdempotencyRecord(key, "outplan.create", old_hash, 201, original)
    retried = await service.execute(request("outplan.create", body, "m-old"))
    assert retried.replayed and retried.status_code == 201 and retried.reply == original
    assert uow.rows == {} and uow.recorded == []
    other = await service.execute(request("outplan.create", {**CREATE, "name": "other"}, "m-old"))
    assert other.status_code == 409 and json.loads(other.reply)["error"]["reason"] == "IDEMPOTENCY_KEY_REUSED"


async def test_new_records_hold_the_fingerprint_not_the_raw_body(
    service: Service, uow: FakeUnitOfWork
) -> None:
    created = request("outplan.create", CREATE, "m-1")
    await service.execute(created)
    stored = uow.records[(uuid.UUID(CUSTOMER), "m-1")]
    assert stored.body_hash == created.fingerprint != created.raw_body_hash


async def test_update_of_a_missing_outplan_is_404_without_event(
    service: Service, uow: FakeUnitOfWork
) -> None:
    body = {"customer_id": CUSTOMER, "id": str(uuid.uuid4()), "name": "x", "detail": "y"}
    outcome = await service.execute(request("outplan.update_basic_info", body, "m-2"))
    reply = json.loads(outcome.reply)
    assert outcome.status_code == 404 and reply["error"]["status"] == "NOT_FOUND"
    assert uow.recorded == []
    # the refusal is remembered, so a retry of the same message gets the same answer
    assert uow.records[(uuid.UUID(CUSTOMER), "m-2")].status_code == 404


async def test_update_bumps_the_version_and_records_an_update(service: Service, uow: FakeUnitOfWork) -> None:
    created = json.loads((await service.execute(request("outplan.create", CREATE))).reply)["data"]
    body = {"customer_id": CUSTOMER, "id": created["id"], "name": "x", "detail": "y"}
    outcome = await service.execute(request("outplan.update_basic_info", body, "m-3"))
    assert json.loads(outcome.reply)["data"]["detail"] == "y"
    assert uow.recorded[-1] == ("outplan_updated", 2, "m-3")


async def test_an_injected_handler_that_fails_raises_out_of_the_service_and_writes_nothing(
    uow: FakeUnitOfWork,
) -> None:
    service = Service(opens(uow), handlers=FAULTY_REGISTRY)
    with pytest.raises(InjectedFault):
        await service.execute(request("outplan.create", {**CREATE, "name": MARKER}))
    assert uow.commits == 0 and uow.rows == {} and uow.records == {}
    outcome = await service.execute(request("outplan.create", CREATE, "m-2"))  # other names: as usual
    assert outcome.status_code == 201 and uow.recorded == [("outplan_created", 1, "m-2")]


async def test_the_production_handlers_treat_the_test_marker_as_an_ordinary_name(service: Service) -> None:
    outcome = await service.execute(request("outplan.create", {**CREATE, "name": MARKER}))
    assert outcome.status_code == 201 and json.loads(outcome.reply)["data"]["name"] == MARKER


async def test_a_batch_applies_changes_in_order_with_one_commit(
    service: Service, uow: FakeUnitOfWork
) -> None:
    created = json.loads((await service.execute(request("outplan.create", CREATE))).reply)["data"]
    body = {"customer_id": CUSTOMER, "id": created["id"], "name": "x", "detail": "y"}
    batch = [
        request("outplan.update_basic_info", body, "b-1"),
        request("outplan.update_basic_info", {**body, "detail": "z"}, "b-2"),
        request("outplan.delete", {"customer_id": CUSTOMER, "id": created["id"]}, "b-3"),
        request("outplan.update_basic_info", body, "b-4"),  # after the delete: 404
        request("outplan.update_basic_info", body, "b-1"),  # the same message again in the batch
    ]
    outcomes = await service.change(batch)
    assert [o.status_code for o in outcomes] == [200, 200, 200, 404, 200]
    assert outcomes[4].reply == outcomes[0].reply and outcomes[4].replayed
    assert uow.recorded[1:] == [
        ("outplan_updated", 2, "b-1"),
        ("outplan_updated", 3, "b-2"),
        ("outplan_deleted", 4, "b-3"),
    ]
    assert uow.commits == 2
    data = json.loads(outcomes[2].reply)["data"]
    assert data["tm_delete"] == data["tm_update"] == "2026-01-02 03:04:05.678901"


async def test_another_customer_cannot_change_an_outplan(service: Service, uow: FakeUnitOfWork) -> None:
    created = json.loads((await service.execute(request("outplan.create", CREATE))).reply)["data"]
    other = {"customer_id": str(uuid.uuid4()), "id": created["id"], "name": "x", "detail": "y"}
    outcome = await service.execute(request("outplan.update_basic_info", other, "o-1"))
    assert outcome.status_code == 404 and len(uow.recorded) == 1


async def test_a_collision_runs_the_batch_again_with_its_outplans_locked(
    service: Service, uow: FakeUnitOfWork, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = json.loads((await service.execute(request("outplan.create", CREATE, "c-1"))).reply)["data"]
    write = uow.write
    collisions = 0

    async def collide_once(**kwargs: Any) -> list[LoggedEvent]:
        nonlocal collisions
        if collisions == 0:
            collisions += 1
            raise ConcurrentChange("another writer was first")
        return await write(**kwargs)

    monkeypatch.setattr(uow, "write", collide_once)
    update = {"customer_id": CUSTOMER, "id": created["id"], "name": "again", "detail": ""}
    outcome = await service.execute(request("outplan.update_basic_info", update, "u-1"))
    assert outcome.status_code == 200 and collisions == 1
    assert uow.begun == 1, "the second attempt runs in a transaction with the outplans locked"
    assert uow.recorded[-1] == ("outplan_updated", 2, "u-1")
