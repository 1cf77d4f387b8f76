"""The event bodies PostgreSQL builds are the ``contracts`` event models, byte for byte.

An event's CloudEvents body is not serialised by the model: the batch write statement
(``worker.persistence.batch_write.write_changes``) builds it with the SQL function
``outplan_traced_event_body`` (migration 0005) around the outplan's JSON, and the relay publishes
those stored bytes. This test is what ties the two together: for generated outplans at the edges of
every field, every event type, event sources, moments and trace contexts (none, a ``traceparent``
alone, or with a ``tracestate``), it runs the production write and checks each body against
``OutplanCreated``/``OutplanUpdated``/``OutplanDeleted``.

The worker stores only a ``tracestate`` the W3C propagator accepted (printable ASCII, which still
holds ``"`` and ``\\``), but the function escapes any text as the model does: the generated
tracestates are free text, controls included.
"""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from contracts import Outplan, names, parse_event
from contracts.events import OutplanCreated, OutplanDeleted, OutplanEvent, OutplanUpdated
from contracts.fields import (
    DETAIL_MAX,
    DIAL_TIMEOUT_MAX,
    DIAL_TIMEOUT_MIN,
    MAX_TRY_COUNT_MAX,
    NAME_MAX,
    SHORT_MAX,
    TRY_INTERVAL_MAX,
    TRY_INTERVAL_MIN,
    StoredSource,
)
from contracts.timefmt import NOT_DELETED
from tests.support.wire import AWKWARD, DETAIL_CHARS, NAME_CHARS, event_types, moments, outplans
from worker.domain import Versioned
from worker.persistence.batch_write import NewEvent, write_changes

pytestmark = pytest.mark.integration

MODELS: dict[str, type[OutplanCreated] | type[OutplanUpdated] | type[OutplanDeleted]] = {
    names.OUTPLAN_CREATED: OutplanCreated,
    names.OUTPLAN_UPDATED: OutplanUpdated,
    names.OUTPLAN_DELETED: OutplanDeleted,
}
# The counter starts just below 2**53, so that sequences cross where a JSON number stops being
# exact as a double: both sides must write the integer's digits, not a float's.
FIRST_SEQUENCE = 2**53 - 2

# The configured CloudEvents source: the default, or any text a setting can hold.
event_sources = st.just(names.EVENT_SOURCE) | st.text(NAME_CHARS | DETAIL_CHARS, max_size=40)
versions = st.sampled_from([1, 2, 2**31 - 1]) | st.integers(1, 2**31 - 1)
correlations = st.none() | st.text(DETAIL_CHARS, max_size=20)
traceparents = st.builds(
    "00-{:032x}-{:016x}-{:02x}".format,
    st.integers(1, 2**128 - 1),
    st.integers(1, 2**64 - 1),
    st.sampled_from([0, 1]),
)
# (traceparent, tracestate): none, a traceparent alone, or both.
TraceContext = tuple[str | None, str | None]
trace_contexts = st.just((None, None)) | st.tuples(
    traceparents, st.none() | st.text(DETAIL_CHARS, min_size=1, max_size=60)
)
batches = st.lists(
    st.tuples(outplans, event_types, versions, correlations, trace_contexts),
    min_size=1,
    max_size=6,
    unique_by=lambda e: e[0].id,
)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _filled(text: str, size: int) -> str:
    return (text * size)[:size]


def _edge_outplan(number: int, source: StoredSource, low: bool, tm_delete: str = NOT_DELETED) -> Outplan:
    """Every text at its longest and full of what JSON escapes; numbers at one end of their range."""
    awkward, controls = "".join(AWKWARD), "\t\n\r\x01\x1f\x7f\x85\u202e"
    return Outplan(
        id=uuid.UUID(int=number),
        customer_id=uuid.UUID(int=2**128 - number),
        name=_filled(awkward, NAME_MAX),
        detail=_filled(controls + awkward, DETAIL_MAX),
        source=source,
        dial_timeout=DIAL_TIMEOUT_MIN if low else DIAL_TIMEOUT_MAX,
        try_interval=TRY_INTERVAL_MIN if low else TRY_INTERVAL_MAX,
        **{f"max_try_count_{i}": 0 if low else MAX_TRY_COUNT_MAX for i in range(5)},
        tm_create="2022-04-28 01:50:23.414000",
        tm_update="2026-01-01 00:00:00.000000",
        tm_delete=tm_delete,
    )


_TEL = StoredSource(
    type="tel",
    target="+4402079460958",
    target_name=_filled("".join(AWKWARD), SHORT_MAX),
    name=_filled("".join(reversed(AWKWARD)), SHORT_MAX),
    detail=_filled('"\\\n', SHORT_MAX),
)
_SIP = StoredSource(type="sip", target=_filled("u", SHORT_MAX - len("@example.com")) + "@example.com")
EDGES: list[tuple[Outplan, str, int, str | None, TraceContext]] = [
    (_edge_outplan(1, _TEL, low=False), names.OUTPLAN_CREATED, 1, None, (None, None)),
    (_edge_outplan(2, _SIP, low=True), names.OUTPLAN_UPDATED, 2, '"quoted" \\ m-1', (TRACEPARENT, None)),
    (
        _edge_outplan(3, _SIP, low=False, tm_delete="2026-01-01 00:00:00.000000"),
        names.OUTPLAN_DELETED,
        2**31 - 1,
        "",
        # A tracestate W3C allows, with the two characters JSON escapes among printable ASCII.
        (TRACEPARENT, 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7,q=say"hi"\\now'),
    ),
]


@pytest.fixture
async def connection(fresh_database: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(fresh_database)
    await conn.execute("UPDATE event_sequence SET last_value = $1", FIRST_SEQUENCE - 1)
    yield conn
    await conn.close()


def expected_event(
    event_type: str,
    event_id: str,
    source: str,
    moment: datetime,
    stored: Versioned,
    eventsequence: int,
    trace: TraceContext,
) -> OutplanEvent:
    """The event the contract says a change makes."""
    outplan = stored.outplan
    return MODELS[event_type](
        id=uuid.UUID(event_id),
        source=source,
        subject=outplan.id,
        time=moment,
        customerid=outplan.customer_id,
        outplanversion=stored.version,
        eventsequence=eventsequence,
        traceparent=trace[0],
        tracestate=trace[1],
        data=outplan,
    )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(batch=batches, source=event_sources, moment=moments)
# Found by this test: a whole second's time lost its fraction in the model ("…:00Z"), and a
# source with non-ASCII or DEL was escaped by json.dumps ("w\u00f6rker") in the body.
@example(batch=EDGES, source='wörker "☎" \\ \x7f', moment=datetime(2026, 1, 1, tzinfo=UTC))
@example(batch=EDGES, source=names.EVENT_SOURCE, moment=datetime(2022, 4, 28, 1, 50, 23, 414000, tzinfo=UTC))
async def test_every_event_body_is_the_event_model_serialised(
    connection: asyncpg.Connection,
    batch: list[tuple[Outplan, str, int, str | None, TraceContext]],
    source: str,
    moment: datetime,
) -> None:
    """One batch per example, written by the production statement in a transaction that is rolled
    back (so generated ids may repeat across examples). Each body must parse with ``parse_event``
    to the model of that outplan, and be the bytes ``model_dump_json`` gives for it."""
    stored = [Versioned(outplan, version) for outplan, _, version, _, _ in batch]
    # The event's data as ``worker.service`` makes it: the outplan serialised by its model.
    events = [
        NewEvent(event_type, versioned, correlation, versioned.outplan.model_dump_json(), *trace)
        for versioned, (_, event_type, _, correlation, trace) in zip(stored, batch, strict=True)
    ]
    transaction = connection.transaction()
    await transaction.start()
    try:
        written = await write_changes(
            connection,
            inserted=stored,
            replaced=[],
            events=events,
            records=[],
            read_versions={},
            moment=moment,
            source=source,
        )
        kept = {
            r["event_id"]: (bytes(r["body"]), r["traceparent"], r["tracestate"])
            for r in await connection.fetch(
                "SELECT event_id::text, body, traceparent, tracestate FROM outplan_events"
                " WHERE event_id = ANY($1::uuid[])",
                [e.event_id for e in written],
            )
        }
    finally:
        await transaction.rollback()

    assert len(written) == len(events)
    for logged, event in zip(written, events, strict=True):
        # The relay publishes the stored row's bytes, with its stored trace context as headers.
        assert kept[logged.event_id] == (logged.body, event.traceparent, event.tracestate)
        assert (logged.traceparent, logged.tracestate) == (event.traceparent, event.tracestate)
        expected = expected_event(
            event.event_type,
            logged.event_id,
            source,
            moment,
            event.stored,
            logged.eventsequence,
            (event.traceparent, event.tracestate),
        )
        parsed = parse_event(logged.body)
        assert type(parsed) is type(expected)
        assert parsed.model_dump() == expected.model_dump()  # field for field, data included
        assert parsed.data == event.stored.outplan
        assert logged.body == expected.model_dump_json().encode()
