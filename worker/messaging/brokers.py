"""Several brokers behind one setting: ``OUTPLAN_AMQP_URL`` as a comma-separated list of AMQP URIs.

The nodes of a RabbitMQ cluster are equals to a client: any of them serves any queue (a quorum
queue's leader may sit on another node; the node the client is on forwards). So the worker
connects to the first node that answers and, when that connection drops, to the next one in the
list, round-robin, rather than waiting for the lost node to come back.

The list is read and checked by ``Settings`` (``settings.split_amqp_urls``, ``Settings.amqp_urls``).

- :class:`FailoverConnection` is aio-pika's ``RobustConnection`` whose every connection attempt
  after a drop or a failed attempt goes to the next URL: the worker's consumer, publisher and
  relay connections are of this class, so each restores its channels (qos, queues, consumers)
  on whichever node it reaches.
- :func:`connect_first` opens a plain connection to the first URL that answers, for the
  one-shot commands (``replay``, ``tail``, ``outplanctl``).
"""

import asyncio
from collections.abc import Sequence
from typing import Any

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractConnection, TimeoutType
from aio_pika.connection import make_url
from aio_pika.robust_connection import RobustConnection

from ..transient import TRANSIENT_ERRORS

CONNECT_TIMEOUT = 10.0
"""Seconds a connection attempt (TCP, TLS, the AMQP handshake) may take before the next broker is
tried. A killed node refuses at once; a node cut off by the network would otherwise hold an
attempt for the operating system's TCP connect timeout (about 2 minutes on Linux)."""


def _refused(exc: BaseException) -> bool:
    """A failure the next node of the same cluster would give too: a login or a virtual host
    refused (users and virtual hosts are cluster-wide), or anything that is not a connection
    failure (a bad URL, a bug); as opposed to a node that does not answer."""
    return isinstance(exc, aiormq.exceptions.ProbableAuthenticationError) or not isinstance(
        exc, TRANSIENT_ERRORS
    )


class FailoverConnection(RobustConnection):
    """A robust connection over ``urls``: each connection attempt after the first goes to the next URL.

    Why a subclass: aio-pika's reconnect loop (``RobustConnection``'s connection factory) always
    connects to ``self.url``, and it runs ``_on_connection_close`` both when an open connection
    drops and when an attempt fails (``UnderlayConnection.connect`` hands the failure to the close
    callback before raising). Moving ``self.url`` on there is the one place that sees every
    failure and nothing else; the restoring of channels, qos, queues and consumers stays
    aio-pika's. A close asked for by this process (``close()``) moves nothing.

    Give every URL the same query parameters: aio-pika reads its own (``reconnect_interval``,
    ``fail_fast``) once, from the first URL; aiormq reads the others (``heartbeat``, ...) from the
    URL each attempt goes to. ``start`` is the position of the URL tried first; ``kwargs`` are
    ``RobustConnection``'s (``client_properties``, ``ssl_context``, ...).
    """

    def __init__(self, urls: Sequence[str], *, start: int = 0, **kwargs: Any) -> None:
        if not urls:
            raise ValueError("no broker URL given")
        self._urls = [make_url(url) for url in urls]
        self._current = start % len(self._urls)
        super().__init__(self._urls[0], **kwargs)  # aio-pika's own parameters: from the first URL
        self.url = self._urls[self._current]

    @property
    def current(self) -> int:
        """The position in the list (0-based) of the broker connected to now, or tried next."""
        return self._current

    @property
    def broker(self) -> str:
        """``host:port`` of the broker connected to now, or tried next: safe to log (no credentials)."""
        url = self._urls[self._current]
        return f"{url.host}:{url.port}"

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        if not (self._close_called or self.is_closed):
            self._current = (self._current + 1) % len(self._urls)
            self.url = self._urls[self._current]
        await super()._on_connection_close(closing)


async def connect_robust_first(
    urls: Sequence[str], *, timeout: TimeoutType = None, **kwargs: Any
) -> FailoverConnection:
    """A ``FailoverConnection`` on the first of ``urls`` that answers, trying them in order.

    ``kwargs`` go to ``FailoverConnection`` (``client_properties``, ...); ``timeout`` (s) bounds
    each attempt.

    :raises TRANSIENT_ERRORS: the last URL's error, when none answered (the caller retries).
    :raises aiormq.exceptions.ProbableAuthenticationError, aiormq.exceptions.AMQPError: a node
        refused the login or the virtual host, at once: every node of a cluster would.
    """
    last: BaseException | None = None
    for start in range(len(urls)):
        connection = FailoverConnection(urls, start=start, **kwargs)
        try:
            await connection.connect(timeout=timeout)
        except Exception as exc:
            await connection.close()
            if _refused(exc):
                raise
            last = exc
            continue
        return connection
    assert last is not None  # Settings never gives an empty list
    raise last


async def connect_first(
    urls: Sequence[str], *, timeout: TimeoutType = None, **kwargs: Any
) -> AbstractConnection:
    """A plain (not robust) connection to the first of ``urls`` that answers, trying them in order.

    ``timeout`` (s) bounds each attempt; ``kwargs`` go to ``aio_pika.connect`` (``client_properties``,
    say). Raises as :func:`connect_robust_first` does.
    """
    last: BaseException | None = None
    for url in urls:
        try:
            connection: AbstractConnection = await aio_pika.connect(url, timeout=timeout, **kwargs)
            return connection
        except Exception as exc:
            if _refused(exc):
                raise
            last = exc
    assert last is not None
    raise last
