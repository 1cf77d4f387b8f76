"""One long-lived AMQP connection for the gateway's RPCs, re-established when it is lost.

Each HTTP call is one command published to the command exchange and one reply on RabbitMQ's
direct reply-to, through ``contracts.client.OutplanClient`` (persistent, ``mandatory``,
publisher-confirmed). What can go wrong is told apart, because the caller's next step differs:

- no connection (the broker unreachable, or reconnecting): ``BrokerUnavailable`` at once (503);
  nothing was sent.
- the connection or channel lost while a command was out: ``BrokerUnavailable`` at once (503);
  the command may or may not have been applied, so a retry must carry the same Idempotency-Key.
- the command returned unroutable (no worker ever declared the command queue) or refused by the
  broker: ``BrokerUnavailable`` (503); nothing was applied.
- no reply within the timeout: ``NoReply`` (504); the command may still be applied.

A login the broker refuses cannot heal by waiting: ``run`` raises ``Misconfigured`` and the
gateway exits 78, as the worker does.
"""

import asyncio
import contextlib
import os
import socket
from collections.abc import Mapping
from typing import Any

import aio_pika
import aio_pika.exceptions
import structlog
from aio_pika.abc import AbstractConnection

from contracts import Reply
from contracts.client import OutplanClient

from ..app import StoppedWhileStarting, keep_trying
from ..messaging.brokers import CONNECT_TIMEOUT, connect_first
from . import metrics

log = structlog.get_logger("outplan_worker.gateway")

# What connecting or opening a channel raises when the broker is away or drops the link.
_CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    aio_pika.exceptions.AMQPError,
    aio_pika.exceptions.ChannelInvalidStateError,
)


class BrokerUnavailable(Exception):
    """The command could not be sent, or its connection was lost before the reply (503). The
    message says which, and whether the command may have been applied."""


class NoReply(Exception):
    """No reply within the timeout (504): the command may still be applied."""


class _Client(OutplanClient):
    """``OutplanClient`` whose waiting requests can be ended at once when their channel goes."""

    def abandon(self, reason: str) -> None:
        """Fail every request still waiting for a reply with ``BrokerUnavailable(reason)``."""
        for _, future in list(self._pending.values()):
            if not future.done():
                future.set_exception(BrokerUnavailable(reason))

    @property
    def usable(self) -> bool:
        """Whether its channel is open (an unknown exchange, say, makes the broker close it)."""
        return self._channel is not None and not self._channel.is_closed

    async def start(self) -> None:
        """Open the channel and the reply consumer; a channel that closes abandons its requests."""
        await super().start()
        assert self._channel is not None
        self._channel.close_callbacks.add(
            lambda *_: self.abandon(
                "the broker channel closed before the reply; the command may have been applied: "
                "retry with the same Idempotency-Key"
            )
        )


class Broker:
    """The gateway's broker connection: ``run()`` keeps it up; ``call()`` makes one RPC.

    ``urls`` are the AMQP URIs of the broker's nodes (tried in order on each connection attempt,
    ``messaging.brokers.connect_first``), ``exchange`` the command exchange, ``timeout`` how long a reply is
    awaited (s).
    """

    def __init__(self, urls: list[str], *, exchange: str, timeout: float) -> None:
        self._urls = urls
        self._exchange = exchange
        self._timeout = timeout
        self._connection: AbstractConnection | None = None
        self._client: _Client | None = None
        self._reopening = asyncio.Lock()
        self._connected_once = False

    @property
    def connected(self) -> bool:
        """Whether the broker connection is up. Its channel may have been closed by the broker (a
        command exchange that does not exist, say): the next call opens another."""
        return self._client is not None and self._connection is not None and not self._connection.is_closed

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, and connect again whenever the connection is lost, until ``stop`` is set; then
        close it. Waits between attempts 0.2 s doubling to 5 s, jittered; each failure is logged
        with its class only (connection strings never). Raises ``Misconfigured`` when the broker
        refuses the login or the virtual host."""
        try:
            while not stop.is_set():
                try:
                    connection = await self._connect(stop)
                except StoppedWhileStarting:
                    return
                lost = asyncio.Event()
                connection.close_callbacks.add(lambda *_, lost=lost: lost.set())
                waiting = {asyncio.ensure_future(lost.wait()), asyncio.ensure_future(stop.wait())}
                _, pending = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
                self._drop(
                    "the broker connection was lost before the reply; the command may have been "
                    "applied: retry with the same Idempotency-Key"
                )
                if not stop.is_set():
                    log.warning("broker connection lost; reconnecting")
        finally:
            self._drop("the gateway is stopping")
            if self._connection is not None:
                with contextlib.suppress(Exception):
                    await self._connection.close()
                self._connection = None

    async def _connect(self, stop: asyncio.Event) -> AbstractConnection:
        """Connect and start the RPC client, as the worker connects (``app.keep_trying``: 0.2 s
        doubling to 5 s between attempts; ``Misconfigured`` at once for what cannot heal)."""
        name = f"outplan-worker gateway on {socket.gethostname()} pid {os.getpid()}"

        async def connect() -> tuple[AbstractConnection, _Client]:
            connection = await connect_first(
                self._urls, client_properties={"connection_name": name}, timeout=CONNECT_TIMEOUT
            )
            try:
                client = _Client(connection, exchange=self._exchange, timeout=self._timeout)
                await client.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await connection.close()
                raise
            return connection, client

        connection, client = await keep_trying("broker", connect, stop)
        self._connection, self._client = connection, client
        metrics.BROKER_CONNECTED.set(1)
        if self._connected_once:
            metrics.RECONNECTS.inc()
            log.info("broker connection restored")
        else:
            log.info("broker connected")
        self._connected_once = True
        return connection

    def _drop(self, reason: str) -> None:
        client, self._client = self._client, None
        metrics.BROKER_CONNECTED.set(0)
        if client is not None:
            client.abandon(reason)

    async def call(
        self, command: str, body: bytes, *, message_id: str | None, headers: Mapping[str, Any]
    ) -> Reply:
        """Send ``command`` (a name of ``contracts.names``) with ``body`` (JSON bytes), ``message_id``
        (the idempotency key; a fresh UUID for a mutation when ``None``) and AMQP ``headers``; the
        reply. Raises ``BrokerUnavailable`` or ``NoReply`` (see the module docstring), and
        ``contracts.client.UnreadableReply`` when the reply is not a ``Reply``."""
        client = self._client
        if client is None:
            raise BrokerUnavailable("the broker cannot be reached now; nothing was sent: try again shortly")
        if not client.usable:
            await self._reopen(client)
        try:
            return await client.send(command, body, message_id=message_id, headers=headers)
        except TimeoutError:
            raise NoReply(
                f"no reply from a worker within {self._timeout:g} s; the command may still be applied: "
                "retry with the same Idempotency-Key"
            ) from None
        except aio_pika.exceptions.PublishError:
            raise BrokerUnavailable(
                "the broker has no queue for this command: no worker has declared it (is one running?); "
                "nothing was applied"
            ) from None
        except aio_pika.exceptions.DeliveryError:
            raise BrokerUnavailable(
                "the broker refused the command (basic.nack: the command queue may be full); nothing "
                "was applied: try again later"
            ) from None
        except aio_pika.exceptions.ChannelNotFoundEntity:
            raise BrokerUnavailable(
                f"the command exchange {self._exchange!r} does not exist: no worker has declared it (is one "
                "running with the same OUTPLAN_COMMAND_EXCHANGE?); nothing was applied"
            ) from None
        except (ConnectionError, aio_pika.exceptions.ChannelInvalidStateError, aio_pika.exceptions.AMQPError):
            raise BrokerUnavailable(
                "the broker connection or channel failed while sending; the command may have been "
                "applied: retry with the same Idempotency-Key"
            ) from None

    async def _reopen(self, client: _Client) -> None:
        async with self._reopening:
            if client.usable or client is not self._client:
                return
            log.warning("broker channel closed; opening another")
            await client.close_channel()
            try:
                await client.start()
            except _CONNECT_ERRORS:
                raise BrokerUnavailable("the broker channel cannot be opened now; nothing was sent") from None
