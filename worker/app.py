"""The worker's lifespan: open the pool and the three broker connections, run, drain on stop, close."""

import asyncio
import contextlib
import gc
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import aiormq.exceptions
import asyncpg
import structlog
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from tenacity import RetryCallState, retry_if_exception_type

from . import refusals
from .handlers import REGISTRY, Registry
from .messaging import brokers, lenient_frames, management, topology
from .messaging.consumer import CommandConsumer
from .messaging.outgoing import Outgoing
from .messaging.relay import Relay
from .observability import metrics
from .observability.health import Health
from .persistence import inbox, outbox
from .persistence.grants import privilege_problem
from .persistence.migrate import schema_problem
from .persistence.uow import PgUnitOfWork
from .refusals import Misconfigured, broker_refusal, certificate_refusal, database_refusal
from .retries import Stopped, failure, retry_in, retrying, sleep_unless
from .service import Service
from .settings import Settings
from .transient import TRANSIENT_ERRORS

log = structlog.get_logger("outplan_worker")
T = TypeVar("T")


class StoppedWhileStarting(Exception):
    """A stop was asked for before the database or the broker could be reached."""


_URL_SETTING = {"database": "OUTPLAN_DATABASE_URL", "broker": "OUTPLAN_AMQP_URL"}


def misconfiguration(what: str, exc: BaseException) -> Misconfigured | None:
    """``Misconfigured`` when ``exc`` (from connecting to ``what``: "database" or "broker") cannot
    heal by waiting: no such database, credentials refused, a virtual host refused, a privilege
    denied, a TLS certificate refused (``refusals``); else ``None``.

    Server messages are quoted (they name a database or a role, never a password); the messages
    of client-side errors are not, since some drivers put the connection string in them.
    """
    if isinstance(exc, Misconfigured):
        return exc
    tls = certificate_refusal(what, _URL_SETTING.get(what, "its URL"), exc)
    if tls is not None:
        return tls
    if isinstance(exc, asyncpg.exceptions.ClientConfigurationError):  # e.g. no such sslrootcert file
        return Misconfigured(
            f"the database connection settings cannot work ({exc}): fix OUTPLAN_DATABASE_URL"
        )
    refused = isinstance(exc, aiormq.exceptions.ProbableAuthenticationError)  # a ConnectionError too
    if isinstance(exc, TRANSIENT_ERRORS) and not refused:
        return None
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return Misconfigured(
            f"{exc}: run `outplan-worker migrate` (it creates the database), or fix the"
            " database name in OUTPLAN_DATABASE_URL"
        )
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):  # no such role, wrong password
        return Misconfigured(
            f"PostgreSQL refused the login ({exc}): fix the user or password in"
            " OUTPLAN_DATABASE_URL, or the server's pg_hba.conf"
        )
    denied = database_refusal(exc)  # e.g. no CONNECT on the database, no SELECT on a table
    if denied is not None:
        return denied
    if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError):
        return Misconfigured(
            "RabbitMQ refused the login (ACCESS_REFUSED): fix the user or password in OUTPLAN_AMQP_URL"
        )
    if isinstance(exc, aiormq.exceptions.AMQPError):  # e.g. a virtual host that does not exist
        return Misconfigured(
            f"RabbitMQ closed the connection while opening it ({type(exc).__name__}): check"
            " the virtual host and the user's permissions in OUTPLAN_AMQP_URL"
        )
    return None  # not known to be permanent: the caller decides


async def keep_trying(what: str, connect: Callable[[], Awaitable[T]], stop: asyncio.Event) -> T:
    """Connect, retrying what can heal by itself (a server still starting, a network blip): waits
    0.2 s doubling to 5 s, jittered (``retries.backoff``). Raises ``Misconfigured`` at once for
    what cannot heal, any other error that is not transient unchanged, and ``StoppedWhileStarting``
    when ``stop`` is set first (a wait under way ends at once)."""

    def log_retry(retry_state: RetryCallState) -> None:
        # Only the class: some drivers put the connection string in their messages.
        log.warning(
            f"{what} unreachable; retrying",
            error=type(failure(retry_state)).__name__,
            retry_in=retry_in(retry_state),
            hint="it may still be starting, or the network is interrupted",
        )

    try:
        async for attempt in retrying(
            first=0.2,
            most=5.0,
            # Misconfigured is not transient: an attempt raises it (below) instead of what it stands for.
            retry=retry_if_exception_type(TRANSIENT_ERRORS),
            before_sleep=log_retry,
            stop=stop,
        ):
            with attempt:
                try:
                    connected = await connect()
                except Exception as exc:
                    permanent = misconfiguration(what, exc)
                    if permanent is None:
                        raise
                    raise permanent from (None if permanent is exc else exc)
    except Stopped:
        raise StoppedWhileStarting(what) from None
    return connected


async def open_pool(settings: Settings, stop: asyncio.Event) -> asyncpg.Pool:
    """A pool on a database that holds this code's schema; raises ``Misconfigured`` when it does not
    exist, refuses the login, was never migrated, is migrated to an older or newer schema, or the
    role lacks a privilege the worker needs (``persistence.grants``)."""
    dsn = settings.database_url.get_secret_value()

    async def connect() -> asyncpg.Pool:
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=settings.db_pool_size, init=_generic_plans, reset=_keep_session
        )
        try:
            problem = await schema_problem(pool) or await privilege_problem(pool)
        except BaseException:
            await pool.close()
            raise
        if problem is not None:
            await pool.close()
            raise Misconfigured(problem)
        return pool

    return await keep_trying("database", connect, stop)


async def _generic_plans(conn: asyncpg.Connection) -> None:
    """Plan each prepared statement once (``plan_cache_mode = force_generic_plan``, PostgreSQL 12+).

    The batch's read and write are one statement each, with arrays and JSON for parameters: under
    the server's default (``auto``) they were planned again at every execution, and planning the
    write took almost as long as running it. With
    generic plans a one-command batch took 1.2 ms instead of 1.9 (``bench/RESULTS.md``). Set on the
    session when the pool opens a connection; ``_keep_session`` keeps it.
    """
    await conn.execute("SET plan_cache_mode = force_generic_plan")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Skip the reset query on release: a round trip per batch for state the worker never sets.

    Pool connections carry no session state here but ``_generic_plans``'s: no other SET, LISTEN or
    advisory locks (the relay and migrations use connections of their own), and every unit of work
    ends its transaction or terminates its connection.
    """


async def open_broker(
    settings: Settings, stop: asyncio.Event, role: str = "worker"
) -> AbstractRobustConnection:
    """A robust connection named ``outplan-worker <role> on <host> pid <pid>`` (as the broker lists it).

    With several URLs (``Settings.amqp_urls``) it opens on the first that answers and, each time
    the connection drops, reconnects to the next one, round-robin (``brokers.FailoverConnection``).
    Each attempt (the reconnections too) gives up after ``brokers.CONNECT_TIMEOUT`` (10 s), so a
    node that vanished from the network does not hold the others up. A lost connection is logged as
    a warning and counted in ``outplan_reconnects_total{peer="broker:<role>"}`` once it is back;
    the log names the broker (``host:port``) it is connected to.
    """
    urls = settings.amqp_urls
    name = f"outplan-worker {role} on {socket.gethostname()} pid {os.getpid()}"
    connection = await keep_trying(
        "broker",
        lambda: brokers.connect_robust_first(
            urls, timeout=brokers.CONNECT_TIMEOUT, client_properties={"connection_name": name}
        ),
        stop,
    )
    log.info("broker connected", connection=role, broker=connection.broker)
    connection.close_callbacks.add(lambda _, exc=None: _lost(role, connection, exc))
    connection.reconnect_callbacks.add(lambda *_: _restored(role, connection))
    return connection


def _lost(role: str, connection: brokers.FailoverConnection, exc: BaseException | None) -> None:
    if exc is None or getattr(connection, "_close_called", False):
        return  # closed by this process: nothing went wrong
    log.warning(
        "broker connection lost; reconnecting",
        connection=role,
        error=type(exc).__name__,
        detail=str(exc)[:200],
        next_broker=connection.broker,  # already moved on (FailoverConnection)
    )


def _restored(role: str, connection: brokers.FailoverConnection) -> None:
    metrics.RECONNECTS.labels(f"broker:{role}").inc()
    log.info("broker connection restored", connection=role, broker=connection.broker)


@dataclass
class Worker:
    """What ``lifespan`` opened, for as long as it runs: the pool, the three broker connections and
    their channels, the consumer (None when this process only relays) and the relay."""

    settings: Settings
    pool: asyncpg.Pool
    connections: list[AbstractRobustConnection]  # consuming, replies and dead letters, the relay
    channels: list[AbstractRobustChannel]  # strong references: robust channels are weakly held
    consumer: CommandConsumer | None
    relay: Relay


@contextlib.asynccontextmanager
async def lifespan(
    settings: Settings, stop: asyncio.Event, *, consume: bool = True, handlers: Registry = REGISTRY
) -> AsyncIterator[Worker]:
    """Open the pool and three broker connections, declare the topology, start the consumer.

    Consuming, replying (with dead-lettering) and the relay each have a connection of their own,
    so that the loss of one does not pause the others: the relay keeps publishing events while
    the consumer's connection is restored, and the other way round. The consumer's ``Service``
    runs the handlers of ``handlers``.
    """
    lenient_frames.install()  # a property that cannot be decoded must not close a connection
    async with contextlib.AsyncExitStack() as stack:
        pool = await open_pool(settings, stop)
        stack.push_async_callback(pool.close)
        connections = []
        for role in ("consumer", "publisher", "relay"):
            connection = await open_broker(settings, stop, role)
            stack.push_async_callback(connection.close)
            connections.append(connection)
        consuming, publishing, relaying = connections
        consume_channel = await consuming.channel()
        await consume_channel.set_qos(prefetch_count=settings.prefetch)
        publish_channel = await publishing.channel(publisher_confirms=True)
        relay_channel = await relaying.channel(publisher_confirms=True, on_return_raises=False)
        topo = await topology.declare(consume_channel, settings)
        if settings.topology == "passive" and settings.management_url is not None:
            api, plan = settings.management_url.get_secret_value(), topology.plan(settings)
            vhost = management.vhost_of(settings.amqp_url.get_secret_value())
            # Unreachable is retried like a server still starting; a difference is Misconfigured.
            await keep_trying("management API", lambda: management.compare(api, vhost, plan), stop)
        relay = Relay(settings, relay_channel)
        consumer = None
        if consume:
            service = Service(
                lambda **kw: PgUnitOfWork(
                    pool, event_source=settings.event_source, on_commit=relay.hand_over, **kw
                ),
                handlers=handlers,
            )
            consumer = CommandConsumer(
                settings, service, Outgoing(publish_channel, settings.dead_letter_exchange)
            )
            try:
                await consumer.start(topo.command_queue)
            except Exception as exc:
                refused = broker_refusal(exc, "basic.consume", f"queue {settings.command_queue!r}")
                if refused is None:
                    raise
                raise refused from None
        yield Worker(
            settings, pool, connections, [consume_channel, publish_channel, relay_channel], consumer, relay
        )


async def purge_idempotency_records(pool: asyncpg.Pool, hours: float, stop: asyncio.Event) -> None:
    """Forget idempotency records past their retention (``hours``), once an hour, until ``stop``.

    A purge the database could not take (a transient error: unreachable, busy) is tried again
    with backoff, from 5 s up to the hour, rather than an hour later; any other error is raised.
    """

    def log_retry(retry_state: RetryCallState) -> None:
        log.warning(
            "idempotency records not purged; retrying",
            error=type(failure(retry_state)).__name__,
            retry_in=retry_in(retry_state),
        )

    with contextlib.suppress(Stopped):
        while not stop.is_set():
            # A fresh policy for each purge: after a success the next failure waits 5 s again.
            async for attempt in retrying(
                first=5.0,
                most=3600.0,
                retry=retry_if_exception_type(TRANSIENT_ERRORS),
                before_sleep=log_retry,
                stop=stop,
            ):
                with attempt:
                    removed = await inbox.purge_older_than(pool, hours)
                    if removed:
                        log.info("idempotency records purged", removed=removed)
            await sleep_unless(3600.0, stop)


async def serve(
    settings: Settings, stop: asyncio.Event, *, consume: bool = True, handlers: Registry = REGISTRY
) -> None:
    """Run until ``stop`` is set, then drain: in-flight messages, then the outbox.

    Commands are run through the handlers of ``handlers`` (see ``lifespan``). Raises
    ``Misconfigured`` for what cannot work: found at start (not logged yet), or a permission
    refused while running (logged then, ``reported`` set; the worker stopped and drained first).
    """
    # Health answers from the start: alive while waiting for PostgreSQL or RabbitMQ, not ready.
    health = Health(settings.ready_max_outbox_age_seconds)
    watching = refusals.watch(stop)  # a permission refused while running stops the worker, exit 78
    beat_task = asyncio.create_task(health.beat(stop), name="heartbeat")
    server = None
    if settings.metrics_port:
        from .observability.http import HealthServer  # here: the other commands need no HTTP server

        server = HealthServer(settings.metrics_host, settings.metrics_port, health.ready, health.live)
        await server.start()
    try:
        async with lifespan(settings, stop, consume=consume, handlers=handlers) as worker:
            health.attach(worker.pool, worker.consumer)
            await _run(worker, settings, stop, health, consume=consume, watching=watching)
    except StoppedWhileStarting as exc:
        log.info("stopped before the worker could start", waiting_for=str(exc))
    finally:
        health.detach()
        if not stop.is_set():  # leaving without a stop: a configuration that cannot work
            beat_task.cancel()
        await asyncio.gather(beat_task, return_exceptions=True)
        if server is not None:
            await server.close()
    if watching.first is not None:
        raise watching.first  # logged when it was found: the exit only gives its status


async def _run(
    worker: Worker,
    settings: Settings,
    stop: asyncio.Event,
    health: Health,
    *,
    consume: bool,
    watching: refusals.RunTimeRefusals,
) -> None:
    """Serve until ``stop``; then stop taking messages, drain those in flight, publish the outbox.

    After a permission refused (``watching.first``) the drain is cut short (1 s for the messages
    in flight, no publishing): what is left is given back to the queue or stays in the outbox.
    """
    relay_task = asyncio.create_task(worker.relay.run(), name="relay")
    purge_task = asyncio.create_task(
        purge_idempotency_records(worker.pool, settings.idempotency_retention_hours, stop), name="purge"
    )
    monitor_task = asyncio.create_task(health.monitor(stop), name="monitor")
    # What start-up built (modules, models, connections) lives as long as the process. Frozen, it
    # is left out of every later collection, so a full collection stays short under load.
    gc.collect()
    gc.freeze()
    log.info(
        "worker started",
        consume=consume,
        queue=settings.command_queue,
        prefetch=settings.prefetch,
        metrics_port=settings.metrics_port,
    )
    await stop.wait()
    refused = watching.first is not None  # the refused operation would fail again while draining
    drain_seconds = min(settings.drain_seconds, 1.0) if refused else settings.drain_seconds
    log.info("stopping: no new messages; draining", drain_seconds=drain_seconds)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + drain_seconds
    drained = True
    if worker.consumer is not None:
        await worker.consumer.stop()
        drained = await worker.consumer.drain(drain_seconds)
    worker.relay.stop(settle_within=max(1.0, deadline - loop.time()))
    await relay_task
    purge_task.cancel()
    published: bool | None = None if refused else await worker.relay.drain(max(0.1, deadline - loop.time()))
    await asyncio.gather(monitor_task, return_exceptions=True)
    if worker.relay.left_to_leader:  # what the outbox holds now, read rather than assumed
        try:
            async with asyncio.timeout(2.0):
                published = (await outbox.read_backlog(worker.pool)).events == 0
        except TRANSIENT_ERRORS:  # TimeoutError is one
            published = None  # unknown: the leader publishes it
    log.info(
        "worker stopped",
        messages_drained=drained,
        outbox_empty=published,
        outbox_published_by="the leading relay" if worker.relay.left_to_leader else "this process",
        handled=worker.consumer.handled if worker.consumer else 0,
    )
