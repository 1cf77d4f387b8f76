"""The example dialer continues the trace an event carries, and exports its span over OTLP/HTTP."""

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import aio_pika
import pytest

from tests.conftest import AMQP_URL
from tests.support.events import event_body
from tests.support.otlp import otlp_receiver

pytestmark = pytest.mark.e2e
EXAMPLE = Path(__file__).parents[2] / "examples" / "dialer_subscriber.py"
TRACE_ID, SPAN_ID = uuid.uuid4().hex, uuid.uuid4().hex[:16]


async def publish(exchange: str, body: bytes, routing_key: str) -> None:
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel(publisher_confirms=True)
        target = await channel.get_exchange(exchange)
        await target.publish(aio_pika.Message(body, content_type="application/cloudevents+json"), routing_key)


async def delete(exchange: str, queue: str) -> None:
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        await channel.queue_delete(queue)
        await channel.exchange_delete(exchange)


def test_the_dialer_applies_an_event_in_a_span_of_its_trace(tmp_path: Path) -> None:
    exchange, queue = f"test-dialer-{uuid.uuid4().hex[:8]}.events", f"test-dialer-{uuid.uuid4().hex[:8]}"
    with otlp_receiver() as receiver:
        env = {
            **os.environ,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_SERVICE_NAME": "dialer-test",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        argv = [sys.executable, str(EXAMPLE), "--exchange", exchange, "--queue", queue]
        process = subprocess.Popen(
            [*argv, "--db", str(tmp_path / "dialer.sqlite3")], env=env, stdout=subprocess.PIPE, text=True
        )
        try:
            assert process.stdout is not None and "listening" in process.stdout.readline()
            traced = event_body("outplan_created", 1, trace={"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01"})
            asyncio.run(publish(exchange, traced, "outplan_created"))
            assert process.stdout.readline().startswith("applied")
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=20)  # the spans are flushed on the way out
            asyncio.run(delete(exchange, queue))
        assert process.returncode == 0
        (span,) = receiver.spans
    assert span.name == f"process {queue}" and span.kind == "CONSUMER"
    assert (span.trace_id, span.parent_span_id) == (TRACE_ID, SPAN_ID)
    assert span.attributes["messaging.system"] == "rabbitmq"
    assert span.attributes["messaging.destination.name"] == queue
