"""What a server refuses for good: a TLS certificate, a permission. Waiting cannot heal either.

Each refusal becomes ``Misconfigured``: one sentence naming the server, the resource and what is
missing (a trusted CA, a host name, a permission), reported in one log line, exit 78
(``EX_CONFIG``). Never retried: a refused certificate retried forever looks like an outage, and
a refused permission retried forever fills the log while nothing is served.

Permissions are RabbitMQ's ("Access Control", https://www.rabbitmq.com/docs/access-control):
``configure`` to declare or delete an exchange or a queue, ``write`` on the queue and ``read`` on
the exchange to bind, ``read`` on a queue to consume, ``write`` on an exchange to publish. The
broker's own text names the resource but not the permission, so the operation that was refused
says which it is.
"""

import asyncio
import ssl

import aiormq.exceptions
import asyncpg
import structlog

EX_CONFIG = 78  # sysexits.h: a configuration error

log = structlog.get_logger("outplan_worker")


class Misconfigured(Exception):
    """A configuration that cannot work however long the worker waits (exit 78, ``EX_CONFIG``).

    Its message is one sentence saying what is wrong and what to do; it holds no credentials.
    ``reported`` is True once it was logged (where it was found, at run time), so the exit
    does not log it a second time.
    """

    reported = False


# TLS failures that are a broken link, not a verdict on the certificate: they may heal.
_TLS_INTERRUPTIONS = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what caused it (``__cause__``, else ``__context__``), outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def certificate_refusal(server: str, url_setting: str, exc: BaseException) -> Misconfigured | None:
    """``Misconfigured`` when connecting to ``server`` ("broker", "database") failed in TLS for
    good: the server's certificate is not signed by a trusted CA, is not valid for the host name
    in the URL (``url_setting`` names the variable), has expired, or the handshake itself is
    refused (a TLS URL on a plain port, a client certificate the server refuses). ``None`` for
    anything else, a TLS link cut mid-handshake included.

    The message quotes OpenSSL's reason (``verify_message``: no secrets in it), never the URL.
    """
    for error in _chain(exc):
        if isinstance(error, ssl.SSLCertVerificationError):
            return Misconfigured(
                f"the {server}'s TLS certificate was refused ({error.verify_message}): give the CA"
                f" that signed it (and a host name it is issued for) in {url_setting}"
            )
        if isinstance(error, ssl.SSLError) and not isinstance(error, _TLS_INTERRUPTIONS):
            return Misconfigured(
                f"the TLS handshake with the {server} failed ({error.reason or error.strerror}): check"
                f" that {url_setting} names the server's TLS port and the client certificate it expects"
            )
    return None


# What each AMQP operation needs (RabbitMQ "Access Control": "How Permissions Work").
NEEDS = {
    "exchange.declare": "configure permission on",
    "queue.declare": "configure permission on",
    "queue.bind": "write permission on the queue and read permission on the exchange of",
    "basic.consume": "read permission on",
    "basic.publish": "write permission on",
}


def broker_refusal(exc: BaseException, operation: str, resource: str) -> Misconfigured | None:
    """``Misconfigured`` when the broker closed the channel with 403 ``ACCESS_REFUSED`` for
    ``operation`` (a key of ``NEEDS``) on ``resource`` (e.g. "exchange 'outplan.events' in vhost
    '/'"); ``None`` for any other error. The line names the permission the operation needs.
    """
    refused = next((e for e in _chain(exc) if isinstance(e, aiormq.exceptions.ChannelAccessRefused)), None)
    if refused is None:
        return None
    return Misconfigured(
        f"RabbitMQ refused {operation} on {resource}: it needs {NEEDS[operation]} it for the user in"
        f" OUTPLAN_AMQP_URL ({_reply_text(refused)}); grant it with `rabbitmqctl set_permissions`"
        + (
            ", or pre-declare the topology (deploy/rabbitmq/definitions.json)"
            " and set OUTPLAN_TOPOLOGY=passive"
            if NEEDS[operation].startswith("configure")
            else ""
        )
    )


def _reply_text(exc: aiormq.exceptions.AMQPError) -> str:
    """The broker's reply text (``ACCESS_REFUSED - access to queue 'q' in vhost '/' refused for
    user 'u'``): it names a resource and a user, never a password."""
    return str(exc.args[0]) if exc.args else type(exc).__name__


def database_refusal(exc: BaseException) -> Misconfigured | None:
    """``Misconfigured`` for PostgreSQL's ``insufficient_privilege`` (SQLSTATE 42501) wherever it
    happens: the server's message names the object (``permission denied for table outplans``);
    ``None`` for anything else."""
    denied = next((e for e in _chain(exc) if isinstance(e, asyncpg.InsufficientPrivilegeError)), None)
    if denied is None:
        return None
    return Misconfigured(
        f"PostgreSQL denied a privilege ({denied}): grant what the worker needs to the role in"
        " OUTPLAN_DATABASE_URL (deploy/postgres/grants.sql), or use another role"
    )


class RunTimeRefusals:
    """Where a refusal found while the worker runs goes: the first one is logged at once, as one
    ERROR line without a traceback, and sets ``stop``; the worker then drains what it can and
    exits 78. ``first`` is that refusal (``reported`` set), ``None`` while there was none."""

    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop
        self.first: Misconfigured | None = None

    def report(self, refused: Misconfigured) -> None:
        """Log ``refused`` and stop the worker, unless a refusal was reported already."""
        if self.first is not None:
            return
        self.first = refused
        refused.reported = True
        log.error(f"stopping: {refused}", exit_code=EX_CONFIG)
        self._stop.set()


_watching: RunTimeRefusals | None = None


def watch(stop: asyncio.Event) -> RunTimeRefusals:
    """Send this process's run-time refusals to a new ``RunTimeRefusals`` on ``stop`` (one worker
    per process: the last call wins) and return it."""
    global _watching
    _watching = RunTimeRefusals(stop)
    return _watching


def report(refused: Misconfigured | None) -> bool:
    """Hand ``refused`` to the watching worker (logged once, stops it); True when it was a refusal.

    Without a watching worker (a tool, a test) it is only returned as True: the caller raises."""
    if refused is None:
        return False
    if _watching is not None:
        _watching.report(refused)
    return True
