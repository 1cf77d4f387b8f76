"""Hostile neighbours: poison messages and awkward subscribers beside the ordinary stream.

During the stream, one of each poison message the worker has met (properties that cannot be
read, headers that cannot be encoded again, a reply queue that refuses, a page token out of
range, NUL in a message_id, a forged ``x-delivery-count``, a 50 MiB body) and two subscribers
(one binding only ``outplan_created``, one full ``reject-publish`` queue). The ledger of the
ordinary commands must stay all zeros, no connection may be lost, and their p99 reply time is
printed beside the same stream's without neighbours.
"""

import asyncio
import datetime
import json
import struct
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage
from pamqp.common import FieldTable

from contracts import Reply
from tests.conftest import AMQP_URL
from tests.faults.conftest import COMMANDS, RATE, ready, report
from tests.faults.traffic import Traffic
from tests.support import raw_amqp
from tests.support.commands import SOURCE
from tests.support.workers import WorkerProcess

pytestmark = [pytest.mark.faults, pytest.mark.timeout(400)]

NOT_UTF8 = b"\xc3(bad"
FULL: FieldTable = {"x-max-length": 1, "x-overflow": "reject-publish"}


async def send_poison(
    channel: aio_pika.abc.AbstractChannel, worker: WorkerProcess, reply_to: str, refusing_reply_to: str
) -> dict[str, str]:
    """Publish one of each poison message; returns correlation id -> the reply reason expected."""
    customer = str(uuid.uuid4())  # not one of the stream's customers: the ledger audits those alone
    exchange = worker.names.command_exchange
    expected: dict[str, str] = {}

    def body(**fields: object) -> bytes:
        return json.dumps({"customer_id": customer, "source": SOURCE, **fields}).encode()

    def corr(reason: str) -> str:
        cid = str(uuid.uuid4())
        expected[cid] = reason
        return cid

    moment = datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)
    raw = [
        (
            "outplan.create",
            body(),
            raw_amqp.replaced(
                b"PLACEHOLDER",
                NOT_UTF8,
                short_string=True,
                message_id="PLACEHOLDER",
                correlation_id=corr("INVALID_PROPERTIES"),
                reply_to=reply_to,
            ),
        ),
        (
            "outplan.create",
            body(),
            raw_amqp.replaced(
                struct.pack(">Q", int(moment.timestamp())),
                struct.pack(">Q", 1_764_470_000_000_000),
                short_string=False,
                timestamp=moment,
                message_id=str(uuid.uuid4()),
                correlation_id=corr("INVALID_PROPERTIES"),
                reply_to=reply_to,
            ),
        ),
        (
            "outplan.create",
            body(dial_timeout=-1),
            raw_amqp.with_headers(
                [(b"huge", raw_amqp.double(1e300)), (b"raw", raw_amqp.long_string(b"\xff" * 5000))],
                message_id=str(uuid.uuid4()),
                correlation_id=corr("VALIDATION_FAILED"),
                reply_to=reply_to,
            ),
        ),
    ]
    for routing_key, payload, properties in raw:
        await raw_amqp.publish(channel, exchange, routing_key, payload, properties)
    target = await channel.get_exchange(exchange, ensure=False)
    plain: list[tuple[str, str, dict[str, Any]]] = [
        (
            "outplan.list",
            json.dumps({"customer_id": customer, "page_token": "o1.f_________8AAAAAAAAAAAAAAAAAAAAB"}),
            {"message_id": str(uuid.uuid4()), "correlation_id": corr("VALIDATION_FAILED")},
        ),
        (
            "outplan.create",
            body().decode(),
            {"message_id": "abc\u0000def", "correlation_id": corr("VALIDATION_FAILED")},
        ),
        (
            "outplan.create",
            body().decode(),
            {
                "message_id": str(uuid.uuid4()),
                "correlation_id": corr("201"),
                "headers": {"x-delivery-count": 4},
            },
        ),
        (
            "outplan.create",
            '{"detail": "' + "x" * (50 * 1024 * 1024) + '"}',
            {"message_id": str(uuid.uuid4()), "correlation_id": corr("BODY_TOO_LARGE")},
        ),
    ]
    for routing_key, text, props in plain:
        await target.publish(
            aio_pika.Message(text.encode(), reply_to=reply_to, **props),
            routing_key=routing_key,
        )
    # A create whose reply cannot be delivered: applied all the same, and not sent round again.
    await target.publish(
        aio_pika.Message(
            body(name="reply refused"), message_id=str(uuid.uuid4()), reply_to=refusing_reply_to
        ),
        routing_key="outplan.create",
    )
    return expected


async def test_hostile_neighbours_cost_the_ordinary_stream_nothing(
    workers: Callable[..., WorkerProcess], traffic: Traffic, fresh_database: str
) -> None:
    worker = workers()
    await ready(worker)
    # The same stream first without neighbours, for the reply time it is compared with.
    calm = Traffic(worker.names, seed=11)
    await calm.open()
    try:
        await calm.run(COMMANDS, RATE)
        await calm.settle()
        calm_figures = await calm.ledger.audit(fresh_database, calm.customers)
    finally:
        await calm.close()
    report("the stream without neighbours", calm_figures, [worker])

    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        selective = await channel.declare_queue(exclusive=True)
        await selective.bind(worker.names.event_exchange, routing_key="outplan_created")
        full = await channel.declare_queue(exclusive=True, arguments=FULL)
        await full.bind(worker.names.event_exchange, routing_key="#")
        refusing = await channel.declare_queue(
            exclusive=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
        )
        replies: dict[str, list[Reply]] = {}

        async def on_reply(message: AbstractIncomingMessage) -> None:
            replies.setdefault(message.correlation_id or "", []).append(
                Reply.model_validate_json(message.body)
            )

        reply_queue = await channel.declare_queue(exclusive=True)
        await reply_queue.consume(on_reply, no_ack=True)
        selected: list[int] = []

        async def on_selected(message: AbstractIncomingMessage) -> None:
            selected.append(json.loads(message.body)["eventsequence"])

        await selective.consume(on_selected, no_ack=True)
        await traffic.open()
        expected: dict[str, str] = {}

        async def on_progress(sent: int) -> None:
            if sent == COMMANDS // 4:
                expected.update(await send_poison(channel, worker, reply_queue.name, refusing.name))
                traffic.ledger.faults += 1

        await traffic.run(COMMANDS, RATE, on_progress)
        await traffic.settle()
        figures = await traffic.ledger.audit(fresh_database, traffic.customers)
        async with asyncio.timeout(30):
            while len(replies) < len(expected):
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # a second reply to any of them would be here by now

    calm_p99, p99 = calm.ledger.reply_seconds(99), traffic.ledger.reply_seconds(99)
    print(
        f"\nreply time of the ordinary commands: p50 {calm.ledger.reply_seconds(50) * 1000:.1f} ms / "
        f"p99 {calm_p99 * 1000:.1f} ms without neighbours; p50 {traffic.ledger.reply_seconds(50) * 1000:.1f} "
        f"ms / p99 {p99 * 1000:.1f} ms with them ({p99 / calm_p99:.2f}x); the selective subscriber took "
        f"{len(set(selected))} events in {len(selected)} deliveries"
    )
    report("hostile neighbours", figures, [worker])
    got = {cid: [r.error.reason if r.error else str(r.status_code) for r in replies[cid]] for cid in expected}
    assert got == {cid: [reason] for cid, reason in expected.items()}, "each answered once, as expected"
    created = [
        json.loads(d.body)["eventsequence"]
        for d in traffic.ledger.deliveries
        if json.loads(d.body)["type"] == "outplan_created"
    ]
    assert set(created) <= set(selected), "the selective subscriber got every event it bound"
    copies = Counter(selected)
    assert max(copies.values()) <= 6, "repeats only of refused events, within the bound (1 + 5)"
    assert worker.log_events("broker connection lost; reconnecting") == [], "no connection was lost"
    assert p99 < 10 * calm_p99 + 0.5, "the ordinary commands kept their reply time's order of magnitude"
    assert await asyncio.to_thread(worker.stop) == 0
