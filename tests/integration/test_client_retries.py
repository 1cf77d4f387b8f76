"""Waiting for a worker with ``connect_when_ready`` leaves nothing open behind it."""

import uuid

import aio_pika
import pytest

from tests.conftest import AMQP_URL
from worker.client import connect_when_ready

pytestmark = pytest.mark.integration


async def test_failed_attempts_do_not_accumulate_open_channels() -> None:
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        # an exchange nobody consumes from: each query comes back unroutable at once
        name = f"test-nobody-{uuid.uuid4().hex[:8]}"
        await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, auto_delete=True)
        assert connection.transport is not None  # connected
        amqp = connection.transport.connection
        before = len(amqp.channels)
        with pytest.raises(TimeoutError, match="no worker answered within 2"):
            await connect_when_ready(connection, exchange=name, seconds=2)
        assert len(amqp.channels) == before, f"{len(amqp.channels) - before} channel(s) left open"
