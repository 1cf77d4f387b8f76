"""``OutplanClient`` for the worker's own tools and tests; producers import it from ``contracts.client``."""

import uuid

import aio_pika
from aio_pika.abc import AbstractConnection
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_delay

from contracts import names
from contracts.client import (
    REPLY_TO,
    Conflict,
    InternalError,
    InvalidArgument,
    NotFound,
    OutplanClient,
    OutplanError,
    UnreadableReply,
    expect,
)

from .retries import backoff, failure

__all__ = [
    "REPLY_TO",
    "Conflict",
    "InternalError",
    "InvalidArgument",
    "NotFound",
    "OutplanClient",
    "OutplanError",
    "UnreadableReply",
    "connect_when_ready",
    "expect",
]


async def connect_when_ready(
    connection: AbstractConnection, *, exchange: str = names.COMMAND_EXCHANGE, seconds: float = 30.0
) -> OutplanClient:
    """A started client, once a worker answers a query (it declares its exchange when it starts).

    A query that times out or fails on the broker (``TimeoutError``, aio-pika's ``AMQPError``) is
    tried again, waiting 0.2 s doubling to 2 s, jittered (the last wait shortened to end at the
    deadline), until ``seconds`` (s) have passed; then raises ``TimeoutError``. Any other error is
    raised at once. Each failed attempt closes the channel it opened, so waiting long leaves
    nothing open on ``connection``.
    """
    step = backoff(0.2, 2.0)

    def wait(retry_state: RetryCallState) -> float:
        left = seconds - (retry_state.seconds_since_start or 0.0)
        return min(step(retry_state), max(0.0, left) + 0.01)  # the last attempt just after the deadline

    def give_up(retry_state: RetryCallState) -> None:
        raise TimeoutError(f"no worker answered within {seconds} s") from failure(retry_state)

    # Built here rather than by retries.retrying: this loop ends at a deadline, not at a stop event.
    async for attempt in AsyncRetrying(
        stop=stop_after_delay(seconds),
        wait=wait,
        retry=retry_if_exception_type((TimeoutError, aio_pika.exceptions.AMQPError)),
        retry_error_callback=give_up,
    ):
        with attempt:
            client = OutplanClient(connection, exchange=exchange)
            try:
                await client.start()
                await client.send(names.LIST, {"customer_id": str(uuid.uuid4()), "page_size": 1}, timeout=2.0)
            except BaseException:
                await client.close_channel()  # whatever ended the attempt: nothing left open
                raise
    return client
