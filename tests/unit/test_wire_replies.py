"""The reply bytes the worker sends are ``contracts.Reply`` serialised, byte for byte.

A successful change is not answered by serialising ``Reply``: ``worker.service.success_reply``
wraps the outplan's JSON (the text its event carries too) in ``{"status_code":…,"data":…}``.
Every other reply (queries, refusals, 400s, the 500) is ``Reply.to_json()`` already. These tests
prove the fast path equal to the model for generated outplans at the edges of every field, and
drive each command through the service, succeeding and failing, checking every reply it gives
against the model.
"""

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import Outplan, Reply, names, replies
from contracts.fields import (
    DETAIL_MAX,
    DIAL_TIMEOUT_MAX,
    DIAL_TIMEOUT_MIN,
    MAX_TRY_COUNT_MAX,
    NAME_MAX,
    SHORT_MAX,
    TRY_INTERVAL_MAX,
    TRY_INTERVAL_MIN,
)
from contracts.timefmt import NOT_DELETED
from tests.support.wire import DETAIL_CHARS, NAME_CHARS, bounded, moments, outplans, texts
from worker.domain import PagePosition, Versioned
from worker.messaging.settler import INTERNAL_REPLY
from worker.persistence.batch_write import NewEvent
from worker.persistence.inbox import IdempotencyRecord
from worker.persistence.outbox import LoggedEvent
from worker.persistence.snapshot import Snapshot
from worker.requests import Rejection, Request, decode
from worker.service import Outcome, Service, success_reply

pytestmark = pytest.mark.unit


@settings(max_examples=200, deadline=None)
@given(outplan=outplans, status_code=st.sampled_from([200, 201]))
def test_the_success_reply_is_the_reply_model_serialised(outplan: Outplan, status_code: int) -> None:
    fast = success_reply(status_code, outplan.model_dump_json())
    assert fast == Reply(status_code=status_code, data=outplan).to_json()
    parsed = Reply.model_validate_json(fast)
    assert parsed == Reply(status_code=status_code, data=outplan.model_dump(mode="json"))
    assert Outplan.model_validate(parsed.data) == outplan


# --- every command through the service ------------------------------------------------------


class Store:
    """An in-memory unit of work: the outplans, the idempotency records and the clock."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment
        self.rows: dict[UUID, Versioned] = {}
        self.records: dict[tuple[UUID, str], IdempotencyRecord] = {}
        self.outplans = self  # the repository the queries read through

    async def begin(self) -> None:
        pass

    async def lock(self, ids: list[UUID]) -> None:
        pass

    async def read(self, ids: list[UUID], keys: list[tuple[UUID, str]]) -> Snapshot:
        return Snapshot(
            {i: self.rows[i] for i in ids if i in self.rows},
            {k: self.records[k] for k in keys if k in self.records},
            self.moment,
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
        for stored in [*inserted, *replaced]:
            self.rows[stored.outplan.id] = stored
        for r in records:
            self.records[r.key] = r
        return []

    async def commit(self) -> None:
        pass

    async def get(self, customer_id: UUID, outplan_id: UUID, *, include_deleted: bool) -> Versioned | None:
        found = self.rows.get(outplan_id)
        if found is None or found.outplan.customer_id != customer_id:
            return None
        return found if include_deleted or found.outplan.tm_delete == NOT_DELETED else None

    async def list_live(
        self, customer_id: UUID, after: PagePosition | None, limit: int
    ) -> list[tuple[Versioned, datetime]]:
        live = [
            s
            for s in self.rows.values()
            if s.outplan.customer_id == customer_id and s.outplan.tm_delete == NOT_DELETED
        ]
        return [(s, self.moment) for s in live][:limit]


def service(store: Store) -> Service:
    @asynccontextmanager
    async def factory(read_only: bool = False) -> AsyncIterator[Any]:
        yield store

    return Service(factory)


def decoded(command: str, body: dict[str, Any], message_id: str) -> Request | Rejection:
    return decode(
        json.dumps(body, ensure_ascii=False).encode(),
        content_type="application/json",
        routing_key=command,
        type_=None,
        message_id=message_id,
        correlation_id=None,
    )


def canonical(reply: bytes, status_code: int) -> Reply:
    """The reply parses, has this status, and is what ``Reply`` serialises for what it says."""
    parsed = Reply.model_validate_json(reply)
    assert parsed.status_code == status_code, parsed
    assert parsed.to_json() == reply
    return parsed


def answered_with(outcome: Outcome, status_code: int, store: Store) -> None:
    """A success carries the stored outplan as ``Reply`` serialises it; a refusal an error."""
    parsed = canonical(outcome.reply, status_code)
    assert outcome.status_code == status_code
    if status_code < 400:
        stored = store.rows[UUID(parsed.data["id"])].outplan  # a repeated create has no outplan_id
        assert outcome.reply == Reply(status_code=status_code, data=stored).to_json()
        assert Outplan.model_validate(parsed.data) == stored
    else:
        assert parsed.error is not None and parsed.data is None


COMMAND_TEL = st.sampled_from(["+15559876543", "+442079460958", "+33612345678", "+8613912345678"])
COMMAND_SIP = st.sampled_from(
    [
        "alice@pbx.example.com:5060",
        "sip:O'Neil.(x)&=+$,;?/%41@[2001:db8::1]:65535",
        "100@192.0.2.1",
        "u" * (SHORT_MAX - len("@example.com")) + "@example.com",
    ]
)
sources = st.tuples(
    st.sampled_from(["tel", "sip"]),
    COMMAND_TEL,
    COMMAND_SIP,
    texts(NAME_CHARS, SHORT_MAX),
    texts(NAME_CHARS, SHORT_MAX),
    texts(DETAIL_CHARS, SHORT_MAX),
).map(
    lambda t: {
        "type": t[0],
        "target": t[1] if t[0] == "tel" else t[2],
        "target_name": t[3],
        "name": t[4],
        "detail": t[5],
    }
)
basic_info = st.fixed_dictionaries(
    {"name": texts(NAME_CHARS, NAME_MAX), "detail": texts(DETAIL_CHARS, DETAIL_MAX)}
)
dial_info = st.fixed_dictionaries(
    {
        "source": sources,
        "dial_timeout": bounded(DIAL_TIMEOUT_MIN, DIAL_TIMEOUT_MAX),
        "try_interval": bounded(TRY_INTERVAL_MIN, TRY_INTERVAL_MAX),
        **{f"max_try_count_{i}": bounded(0, MAX_TRY_COUNT_MAX) for i in range(5)},
    }
)


@settings(max_examples=60, deadline=None)
@given(
    moment=moments,
    created=st.tuples(basic_info, dial_info),
    renamed=basic_info,
    redialled=dial_info,
)
async def test_every_command_is_answered_as_the_reply_model_serialises_it(
    moment: datetime,
    created: tuple[dict[str, Any], dict[str, Any]],
    renamed: dict[str, Any],
    redialled: dict[str, Any],
) -> None:
    """Create, get, list, both updates and delete, each succeeding, repeated, and refused (400,
    404, 409): every reply is ``Reply`` serialised, and a success carries the outplan stored."""
    store = Store(moment)
    worker = service(store)
    customer = str(uuid.uuid4())

    async def send(command: str, body: dict[str, Any], status_code: int, message_id: str = "") -> Outcome:
        request = decoded(command, {"customer_id": customer, **body}, message_id or str(uuid.uuid4()))
        assert isinstance(request, Request), request
        outcome = await worker.execute(request)
        answered_with(outcome, status_code, store)
        return outcome

    create = {**created[0], **created[1]}
    made = await send(names.CREATE, create, 201, message_id="create")
    assert (await send(names.CREATE, create, 201, message_id="create")).reply == made.reply  # repeated
    await send(names.CREATE, {**create, "name": "another"}, 409, message_id="create")
    outplan_id = str(made.outplan_id)
    target = {"id": outplan_id}

    await send(names.GET, target, 200)
    listed = canonical((await worker.execute(_request(names.LIST, customer, {}))).reply, 200)
    assert [Outplan.model_validate(o) for o in listed.data["result"]] == [
        s.outplan for s in store.rows.values()
    ]
    await send(names.UPDATE_BASIC_INFO, {**target, **renamed}, 200, message_id="basic")
    await send(names.UPDATE_BASIC_INFO, {**target, **renamed, "name": "other"}, 409, message_id="basic")
    await send(names.UPDATE_DIAL_INFO, {**target, **redialled}, 200, message_id="dial")
    await send(names.UPDATE_DIAL_INFO, {**target, **dial_info_changed(redialled)}, 409, message_id="dial")
    deleted = await send(names.DELETE, target, 200, message_id="delete")
    assert (await send(names.DELETE, target, 200, message_id="delete")).reply == deleted.reply  # repeated
    await send(names.DELETE, {"id": str(uuid.uuid4())}, 409, message_id="delete")

    # The outplan is gone: get finds it only with include_deleted; every mutation is 404.
    await send(names.GET, {**target, "include_deleted": True}, 200)
    await send(names.GET, target, 404)
    await send(names.UPDATE_BASIC_INFO, {**target, **renamed}, 404)
    await send(names.UPDATE_DIAL_INFO, {**target, **redialled}, 404)
    await send(names.DELETE, target, 404)
    empty = canonical((await worker.execute(_request(names.LIST, customer, {}))).reply, 200)
    assert empty.data == {"result": [], "next_page_token": ""}

    # Invalid input never reaches the service: its 400 is the rejection's ``Reply``.
    for command in names.COMMAND_NAMES:
        rejection = decoded(command, {"customer_id": "not a uuid"}, str(uuid.uuid4()))
        assert isinstance(rejection, Rejection), rejection
        reply = canonical(rejection.reply().to_json(), 400)
        assert reply.error is not None and reply.error.reason == replies.VALIDATION_FAILED


def test_the_reply_to_a_command_that_keeps_failing_is_the_reply_model_serialised() -> None:
    reply = canonical(INTERNAL_REPLY, 500)
    assert reply.error is not None and reply.error.reason == replies.INTERNAL_ERROR


def _request(command: str, customer: str, body: dict[str, Any]) -> Request:
    request = decoded(command, {"customer_id": customer, **body}, str(uuid.uuid4()))
    assert isinstance(request, Request), request
    return request


def dial_info_changed(dial: dict[str, Any]) -> dict[str, Any]:
    """Another dial info: the same message id with it is a reused key."""
    other = DIAL_TIMEOUT_MIN if dial["dial_timeout"] != DIAL_TIMEOUT_MIN else DIAL_TIMEOUT_MAX
    return {**dial, "dial_timeout": other}
