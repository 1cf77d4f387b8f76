"""``OutplanClient``: an asyncio RPC client for the worker's commands (aio-pika, direct reply-to).

Needs aio-pika, which ``contracts`` itself does not: install ``outplan-contracts[client]``.
"""

import asyncio
import contextlib
import json
import uuid
from collections.abc import Mapping
from typing import Any, Self
from uuid import UUID

try:
    import aio_pika
    from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "contracts.client needs aio-pika: pip install 'outplan-contracts[client]'",
        name=exc.name,
    ) from exc

from pydantic import ValidationError

from . import names, tracing
from .errors import summarise, validation_details
from .replies import Reply

REPLY_TO = "amq.rabbitmq.reply-to"


class OutplanError(Exception):
    """A refusal from the worker; ``reply`` holds the whole answer, ``details`` the field errors."""

    def __init__(self, reply: Reply) -> None:
        assert reply.error is not None
        super().__init__(f"{reply.status_code} {reply.error.reason}: {reply.error.message}")
        self.reply = reply
        self.status_code = reply.status_code
        self.reason = reply.error.reason
        self.details = reply.error.details


class InvalidArgument(OutplanError):
    """400: the request broke a rule; ``details`` names each field."""


class NotFound(OutplanError):
    """404: no such outplan for this customer."""


class Conflict(OutplanError):
    """409: the message_id was used before for something else."""


class InternalError(OutplanError):
    """500: the worker failed on this command and set it aside."""


class UnreadableReply(ValueError):
    """A reply came back for the command but is not a ``Reply`` (not JSON, or not its shape).

    The message names the command and what is wrong (``the reply to outplan.get is not a Reply:
    status_code is required``); ``command`` is the command's name, ``body`` the reply as received,
    ``details`` one ``ErrorDetail`` per failing field, and the ``ValidationError`` the ``__cause__``.
    """

    def __init__(self, command: str, body: bytes, error: ValidationError) -> None:
        self.details = validation_details(error)
        super().__init__(f"the reply to {command} is not a Reply: {summarise(self.details)}")
        self.command = command
        self.body = body
        self.__cause__ = error


_ERRORS = {400: InvalidArgument, 404: NotFound, 409: Conflict}


def expect(reply: Reply) -> Any:
    """The reply's ``data``, or the matching ``OutplanError`` subclass raised."""
    if reply.ok:
        return reply.data
    raise _ERRORS.get(reply.status_code, InternalError)(reply)


class OutplanClient:
    """Send commands and await their replies; mutations get a fresh ``message_id`` unless given.

    Every command method takes ``message_id``, the idempotency key of a mutation: set your own and
    reuse it when you retry (after a ``TimeoutError``, say), and the worker answers a repeat with the
    original reply instead of applying it twice.

    ``connection`` is an open aio-pika connection; commands are published to ``exchange`` with the
    command name as routing key; ``timeout`` is how long a reply is awaited by default, in seconds.
    Replies come back by RabbitMQ's direct reply-to (``amq.rabbitmq.reply-to``), matched to their
    request by a fresh ``correlation_id``. Call ``start()`` once before sending (``connect`` does).
    """

    def __init__(
        self, connection: AbstractConnection, *, exchange: str = names.COMMAND_EXCHANGE, timeout: float = 10.0
    ) -> None:
        self._connection = connection
        self._exchange_name = exchange
        self._timeout = timeout
        self._pending: dict[str, tuple[str, asyncio.Future[Reply]]] = {}  # correlation_id: command, reply
        self._channel: AbstractChannel | None = None

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> Self:
        """A started client on a new connection to ``url`` (an AMQP URI,
        ``amqp://user:password@host:5672/vhost``), which ``close()`` closes; ``kwargs`` are the
        constructor's (``exchange``, ``timeout``). Raises aio-pika's ``AMQPConnectionError`` when
        the broker cannot be reached or refuses the login."""
        client = cls(await aio_pika.connect(url), **kwargs)
        await client.start()
        return client

    async def start(self) -> None:
        """Open a channel with publisher confirms and consume direct reply-to on it: RabbitMQ
        wants that consumer in place before a message naming ``amq.rabbitmq.reply-to`` is sent."""
        self._channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        queue = await self._channel.get_queue(REPLY_TO, ensure=False)
        await queue.consume(self._on_reply, no_ack=True)

    async def close(self) -> None:
        """Close the connection, shared or not; ``close_channel()`` leaves it open."""
        await self._connection.close()

    async def close_channel(self) -> None:
        """Close the channel ``start()`` opened, leaving the connection open (it may be shared)."""
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(Exception):  # closing what the broker may have closed already
                await channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        command, future = self._pending.pop(message.correlation_id or "", ("", None))
        if future is None or future.done():
            return  # a late reply to a request that timed out, or not ours
        try:
            reply = Reply.model_validate_json(message.body)
        except ValidationError as exc:
            # Raised here, it would only be logged by aio-pika and the caller would see a timeout.
            future.set_exception(UnreadableReply(command, message.body, exc))
        else:
            future.set_result(reply)

    async def send(
        self,
        command: str,
        body: dict[str, Any] | bytes,
        *,
        message_id: str | None = None,
        content_type: str | None = "application/json",
        timeout: float | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> Reply:
        """Send one command (a name from ``contracts.names``) and wait for its reply.

        ``body`` is a dict, sent as JSON (values JSON cannot hold, such as UUIDs, as ``str``), or
        bytes sent as they are. ``message_id`` is the idempotency key: a new UUID for a mutation
        when ``None``; pass your own and reuse it when you retry. ``content_type`` is the AMQP
        property (``None``: left out); ``headers`` more AMQP headers to send (the trace context
        below is added to them); ``timeout`` in seconds, the client's when ``None`` (0 waits
        for no reply: ``TimeoutError`` once the command is published). The command goes out
        persistent, ``mandatory`` and confirmed, with the command name as routing key and AMQP
        ``type``, and with the current trace context in its headers (W3C ``traceparent`` and
        ``tracestate``, see ``contracts.tracing.inject``) when OpenTelemetry is installed and a
        span is current: the worker then processes it inside that trace.

        Returns the reply as sent; refusals are replies too (``expect`` raises them). Raises
        ``TimeoutError`` when no reply comes in time, ``UnreadableReply`` (a ``ValueError``) when
        the reply is not a ``Reply``, naming what is wrong with it,
        aio-pika's ``PublishError`` when the broker returns the command unroutable (no worker has
        declared the queue and its bindings), ``DeliveryError`` when it refuses it, and
        ``ChannelClosed`` (``ChannelNotFoundEntity``) when the exchange does not exist, which
        closes the client's channel.
        """
        assert self._channel is not None, "call start() first"
        if message_id is None and command in names.MUTATIONS:
            message_id = str(uuid.uuid4())
        correlation_id = str(uuid.uuid4())
        payload = body if isinstance(body, bytes) else json.dumps(body, default=str).encode()
        table: dict[str, Any] = dict(headers or {})
        tracing.inject(table)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = (command, future)
        try:
            exchange = await self._channel.get_exchange(self._exchange_name, ensure=False)
            await exchange.publish(
                aio_pika.Message(
                    payload,
                    content_type=content_type,
                    message_id=message_id,
                    correlation_id=correlation_id,
                    reply_to=REPLY_TO,
                    type=command,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    headers=table or None,
                ),
                routing_key=command,
                mandatory=True,
            )
            return await asyncio.wait_for(future, self._timeout if timeout is None else timeout)
        finally:
            self._pending.pop(correlation_id, None)

    async def create(self, customer_id: UUID | str, *, message_id: str | None = None, **fields: Any) -> Reply:
        """``outplan.create`` with the body's other ``fields`` (``source`` as a dict such as
        ``{"type": "tel", "target": "+15559876543"}``, ``dial_timeout`` and ``try_interval`` in
        milliseconds, ...); the reply's ``data`` is the outplan (201).

        ``message_id`` is the idempotency key (a new UUID when ``None``): pass your own and reuse it
        when you retry, and a repeat gets the original reply instead of creating a second outplan."""
        return await self.send(
            names.CREATE, {"customer_id": str(customer_id), **fields}, message_id=message_id
        )

    async def get(
        self,
        customer_id: UUID | str,
        outplan_id: UUID | str,
        *,
        include_deleted: bool = False,
        message_id: str | None = None,
    ) -> Reply:
        """``outplan.get``: the reply's ``data`` is the outplan (200), or the reply is 404.
        ``message_id`` is optional for a query (none is sent when ``None``); it only names the
        request in the worker's logs."""
        return await self.send(
            names.GET,
            {"customer_id": str(customer_id), "id": str(outplan_id), "include_deleted": include_deleted},
            message_id=message_id,
        )

    async def list(
        self,
        customer_id: UUID | str,
        *,
        page_size: int = 100,
        page_token: str = "",
        message_id: str | None = None,
    ) -> Reply:
        """``outplan.list``: one page (``page_size`` 1 to 100) of the customer's live outplans, newest
        first; ``data`` is ``{"result": [...], "next_page_token": ...}``, whose token asks for the
        next page (``""`` after the last). ``message_id`` as for ``get``."""
        return await self.send(
            names.LIST,
            {"customer_id": str(customer_id), "page_size": page_size, "page_token": page_token},
            message_id=message_id,
        )

    async def update_basic_info(
        self,
        customer_id: UUID | str,
        outplan_id: UUID | str,
        *,
        name: str,
        detail: str,
        message_id: str | None = None,
    ) -> Reply:
        """``outplan.update_basic_info``: the reply's ``data`` is the outplan with ``name`` and
        ``detail`` replaced, or the reply is 404. ``message_id`` is the idempotency key, as for
        ``create``."""
        return await self.send(
            names.UPDATE_BASIC_INFO,
            {"customer_id": str(customer_id), "id": str(outplan_id), "name": name, "detail": detail},
            message_id=message_id,
        )

    async def update_dial_info(
        self, customer_id: UUID | str, outplan_id: UUID | str, *, message_id: str | None = None, **fields: Any
    ) -> Reply:
        """``outplan.update_dial_info``; ``fields`` replace them all: ``source``, ``dial_timeout``
        and ``try_interval`` (ms), ``max_try_count_0`` to ``_4``. ``message_id`` is the idempotency
        key, as for ``create``."""
        return await self.send(
            names.UPDATE_DIAL_INFO,
            {"customer_id": str(customer_id), "id": str(outplan_id), **fields},
            message_id=message_id,
        )

    async def delete(
        self, customer_id: UUID | str, outplan_id: UUID | str, *, message_id: str | None = None
    ) -> Reply:
        """``outplan.delete``: the reply's ``data`` is the outplan as deleted (``tm_delete`` set), or
        the reply is 404. ``message_id`` is the idempotency key, as for ``create``."""
        return await self.send(
            names.DELETE, {"customer_id": str(customer_id), "id": str(outplan_id)}, message_id=message_id
        )
