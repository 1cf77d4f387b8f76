"""Several broker URLs: the first that answers is used, and a dropped connection moves on to the next.

Each "broker" is a relay to the one real broker (``AmqpCutter``), so that the test can drop a
connection at a chosen moment and tell by the port which URL a connection went to.
"""

import asyncio

import aio_pika
import pytest

from tests.conftest import AMQP_URL
from tests.support.amqp_cutter import BASIC_PUBLISH, AmqpCutter
from tests.support.workers import free_port
from worker.messaging.brokers import FailoverConnection, connect_first, connect_robust_first

pytestmark = pytest.mark.integration

NEVER = (255, 255)  # a method no client sends: that relay never cuts


def port_of(url: str) -> str:
    return url.rsplit("@", 1)[1].split("/", 1)[0]


async def publish_confirmed(channel: aio_pika.abc.AbstractChannel) -> None:
    # To the default exchange with a routing key no queue has: confirmed, and delivered nowhere.
    await channel.default_exchange.publish(aio_pika.Message(b"x"), routing_key="no-such-queue", timeout=5)


async def test_a_broker_that_does_not_answer_is_skipped() -> None:
    nobody = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    connection = await connect_robust_first([nobody, AMQP_URL], timeout=5)
    try:
        assert connection.current == 1
        await publish_confirmed(await connection.channel())
    finally:
        await connection.close()
    plain = await connect_first([nobody, AMQP_URL], timeout=5)
    await plain.close()


async def test_no_broker_answering_raises_the_last_error() -> None:
    urls = [f"amqp://guest:guest@127.0.0.1:{free_port()}/" for _ in range(2)]
    with pytest.raises(ConnectionError):
        await connect_robust_first(urls, timeout=5)


async def test_a_refused_login_is_raised_at_once_not_tried_on_the_next_broker() -> None:
    wrong = AMQP_URL.replace("guest:guest@", "guest:wrong@")
    async with AmqpCutter(NEVER) as second:
        with pytest.raises(aio_pika.exceptions.ProbableAuthenticationError):
            await connect_robust_first([wrong, second.url], timeout=5)


async def test_a_dropped_connection_reconnects_to_the_next_broker_that_answers() -> None:
    nobody = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    async with AmqpCutter(BASIC_PUBLISH) as first, AmqpCutter(NEVER) as third:
        # reconnect_interval (aio-pika's, read from the first URL): no 5 s pause in this test.
        urls = [first.url + "?reconnect_interval=0.2", nobody, third.url]
        connection = await connect_robust_first(urls, timeout=5)
        assert isinstance(connection, FailoverConnection)
        restored = asyncio.Event()
        connection.reconnect_callbacks.add(lambda *_: restored.set())
        try:
            assert connection.broker == port_of(first.url)
            channel = await connection.channel()
            with pytest.raises((ConnectionError, aio_pika.exceptions.AMQPError)):
                await publish_confirmed(channel)  # the first relay drops the connection here
            # The second URL refuses the attempt, which moves on to the third.
            await asyncio.wait_for(restored.wait(), 10)
            assert first.cuts == 1
            assert (connection.current, connection.broker) == (2, port_of(third.url))
            await publish_confirmed(channel)  # the same robust channel, restored on the third broker
        finally:
            await connection.close()
