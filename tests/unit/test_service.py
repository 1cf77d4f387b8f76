"""Handlers and the idempotency rules, driven through the service with an in-memory unit of work."""

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import pytest

from contracts import CreateOutplan, Outplan, Source, UpdateBasicInfo
from worker.domain import StoredReply, Versioned
from worker.requests import Request, decode
from worker.service import InjectedFault, Service

pytestmark = pytest.mark.unit
CUSTOMER = str(uuid.uuid4())


class FakeOutplans:
    def __init__(self) -> None:
        self.rows: dict[UUID, Versioned] = {}

    async def add(self, outplan_id: UUID, cmd: CreateOutplan) -> Versioned:
        outplan = Outplan(
            id=outplan_id, customer_id=cmd.customer_id, name=cmd.name, detail=cmd.detail,
            source=Source.model_validate(cmd.source.model_dump()), dial_timeout=cmd.dial_timeout,
            try_interval=cmd.try_interval, max_try_count_0=0, max_try_count_1=0, max_try_count_2=0,
            max_try_count_3=0, max_try_count_4=0, tm_create="t", tm_update="t", tm_delete="9999",
        )
        self.rows[outplan_id] = Versioned(outplan, 1)
        return self.rows[outplan_id]

    async def update_basic_info(self, cmd: UpdateBasicInfo) -> Versioned | None:
        found = self.rows.get(cmd.id)
        if found is None or found.outplan.customer_id != cmd.customer_id:
            return None
        changed = found.outplan.model_copy(update={"name": cmd.name, "detail": cmd.detail})
        self.rows[cmd.id] = Versioned(changed, found.version + 1)
        return self.rows[cmd.id]


class FakeEvents:
    def __init__(self) -> None:
        self.recorded: list[tuple[str, int, str | None]] = []

    async def record(self, event_type: str, stored: Versioned, correlation_id: str | None) -> UUID:
        self.recorded.append((event_type, stored.version, correlation_id))
        return uuid.uuid4()


class FakeInbox:
    def __init__(self) -> None:
        self.records: dict[tuple[UUID, str], StoredReply] = {}

    async def claim(self, customer_id: UUID, message_id: str, command: str, body_hash: bytes) -> StoredReply | None:
        found = self.records.get((customer_id, message_id))
        if found is None:
            self.records[(customer_id, message_id)] = StoredReply(command, body_hash, None, None)
        return found

    async def remember(self, customer_id: UUID, message_id: str, status_code: int, reply: bytes) -> None:
        old = self.records[(customer_id, message_id)]
        self.records[(customer_id, message_id)] = StoredReply(old.command, old.body_hash, status_code, reply)


class FakeUnitOfWork:
    """Records what was written; changes become visible only on commit."""

    def __init__(self) -> None:
        self.outplans, self.events, self.inbox = FakeOutplans(), FakeEvents(), FakeInbox()
        self.commits = 0

    async def commit(self) -> None:
        self.commits += 1


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


@pytest.fixture
def service(uow: FakeUnitOfWork) -> Service:
    @asynccontextmanager
    async def factory() -> AsyncIterator[Any]:
        yield uow

    return Service(factory, fault_hook=True)


def request(command: str, body: dict[str, Any], message_id: str | None = "m-1") -> Request:
    decoded = decode(json.dumps(body).encode(), content_type="application/json", routing_key=command,
                     type_=None, message_id=message_id, correlation_id=None)
    assert isinstance(decoded, Request), decoded
    return decoded


CREATE = {"customer_id": CUSTOMER, "name": "n", "source": {"type": "tel", "target": "+15559876543"}}


async def test_create_records_one_event_and_commits(service: Service, uow: FakeUnitOfWork) -> None:
    outcome = await service.execute(request("outplan.create", CREATE))
    reply = json.loads(outcome.reply)
    assert outcome.status_code == 201 and reply["data"]["name"] == "n"
    assert uow.events.recorded == [("outplan_created", 1, "m-1")]
    assert uow.commits == 1 and str(outcome.outplan_id) == reply["data"]["id"]


async def test_a_repeated_message_id_gets_the_original_reply_and_no_event(service: Service, uow: FakeUnitOfWork) -> None:
    first = await service.execute(request("outplan.create", CREATE))
    again = await service.execute(request("outplan.create", CREATE))
    assert again.reply == first.reply and again.replayed and again.status_code == 201
    assert len(uow.outplans.rows) == 1 and len(uow.events.recorded) == 1


async def test_a_reused_message_id_with_another_body_is_409(service: Service, uow: FakeUnitOfWork) -> None:
    await service.execute(request("outplan.create", CREATE))
    outcome = await service.execute(request("outplan.create", {**CREATE, "name": "other"}))
    reply = json.loads(outcome.reply)
    assert outcome.status_code == 409 and reply["error"]["reason"] == "IDEMPOTENCY_KEY_REUSED"
    assert len(uow.outplans.rows) == 1 and len(uow.events.recorded) == 1


async def test_update_of_a_missing_outplan_is_404_without_event(service: Service, uow: FakeUnitOfWork) -> None:
    body = {"customer_id": CUSTOMER, "id": str(uuid.uuid4()), "name": "x", "detail": "y"}
    outcome = await service.execute(request("outplan.update_basic_info", body, "m-2"))
    reply = json.loads(outcome.reply)
    assert outcome.status_code == 404 and reply["error"]["status"] == "NOT_FOUND"
    assert uow.events.recorded == []
    # the refusal is remembered, so a retry of the same message gets the same answer
    assert uow.inbox.records[(uuid.UUID(CUSTOMER), "m-2")].status_code == 404


async def test_update_bumps_the_version_and_records_an_update(service: Service, uow: FakeUnitOfWork) -> None:
    created = json.loads((await service.execute(request("outplan.create", CREATE))).reply)["data"]
    body = {"customer_id": CUSTOMER, "id": created["id"], "name": "x", "detail": "y"}
    outcome = await service.execute(request("outplan.update_basic_info", body, "m-3"))
    assert json.loads(outcome.reply)["data"]["detail"] == "y"
    assert uow.events.recorded[-1] == ("outplan_updated", 2, "m-3")


async def test_the_fault_hook_raises_only_for_its_marker(service: Service) -> None:
    with pytest.raises(InjectedFault):
        await service.execute(request("outplan.create", {**CREATE, "name": "__raise__"}))
