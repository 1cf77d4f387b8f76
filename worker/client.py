"""``OutplanClient`` for the worker's own tools and tests; producers import it from ``contracts.client``."""

import asyncio
import uuid

import aio_pika
from aio_pika.abc import AbstractConnection

from contracts import names
from contracts.client import (
    REPLY_TO,
    Conflict,
    InternalError,
    InvalidArgument,
    NotFound,
    OutplanClient,
    OutplanError,
    expect,
)

__all__ = [
    "REPLY_TO",
    "Conflict",
    "InternalError",
    "InvalidArgument",
    "NotFound",
    "OutplanClient",
    "OutplanError",
    "connect_when_ready",
    "expect",
]


async def connect_when_ready(connection: AbstractConnection, *, exchange: str = names.COMMAND_EXCHANGE,
                             seconds: float = 30.0) -> OutplanClient:
    """A started client, once a worker answers a query (it declares its exchange when it starts)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        client = OutplanClient(connection, exchange=exchange)
        try:
            await client.start()
            await client.send(names.LIST, {"customer_id": str(uuid.uuid4()), "page_size": 1}, timeout=2.0)
            return client
        except (TimeoutError, aio_pika.exceptions.AMQPError) as exc:
            if loop.time() > deadline:
                raise TimeoutError(f"no worker answered within {seconds} s") from exc
            await asyncio.sleep(0.3)
