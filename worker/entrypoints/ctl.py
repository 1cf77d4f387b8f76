"""``outplanctl``: the tutorial's REST calls as commands, over RabbitMQ RPC.

Exit status: 0 success, 2 bad usage, 3 invalid (400), 4 not found (404), 5 conflict (409),
6 worker error (500, or a reply that is not a reply), 7 no answer (timeout or no broker),
78 a broker whose TLS certificate is refused (a wrong CA or host name in OUTPLAN_AMQP_URL).

A ``TRACEPARENT`` (and ``TRACESTATE``) in the environment, the OpenTelemetry specification's
environment carrier, is sent on as the command's W3C trace context, so that a shell user can tie a
command to a trace of their own.
"""

import argparse
import asyncio
import json
import logging
import os
import sys
import uuid
from typing import Any

import aio_pika

from contracts import Reply, names, tracing

from ..client import OutplanClient, UnreadableReply
from ..messaging.brokers import connect_first
from ..refusals import EX_CONFIG, certificate_refusal
from ..settings import InvalidSettings, Settings, load

EXIT_WORKER_ERROR = 6
EXIT_BY_STATUS = {400: 3, 404: 4, 409: 5, 500: EXIT_WORKER_ERROR}
EXIT_NO_ANSWER = 7
# What connecting, opening the client's channel or publishing raise when the broker cannot be reached
# or drops the connection (AMQPConnectionError is an OSError; a closed channel's state error is not).
_BROKER_ERRORS = (
    OSError,
    TimeoutError,
    aio_pika.exceptions.AMQPError,
    aio_pika.exceptions.ChannelInvalidStateError,
)


def _dial_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("--source-type", choices=["tel", "sip"], required=required)
    parser.add_argument("--source-target", required=required, help="e.g. +15559876543 or user@host")
    parser.add_argument("--dial-timeout", type=int, required=required, help="milliseconds")
    parser.add_argument("--try-interval", type=int, required=required, help="milliseconds")
    parser.add_argument(
        "--max-try-count",
        type=int,
        nargs=5,
        metavar="N",
        required=required,
        help="five counts, for destinations 0..4",
    )


def parser() -> argparse.ArgumentParser:
    """``outplanctl``'s arguments: ``--customer-id`` (default ``$OUTPLAN_CUSTOMER_ID``),
    ``--timeout`` (s), ``--message-id``, and one sub-command per REST call of the tutorial."""
    top = argparse.ArgumentParser(
        prog="outplanctl",
        description=__doc__.splitlines()[0],
        epilog="Exit status: 0 ok, 2 usage, 3 invalid, 4 not found, 5 conflict, "
        "6 worker error (or a reply that is not a reply), 7 no answer, 78 TLS certificate refused. "
        "$TRACEPARENT (and $TRACESTATE), when set, is sent as the command's W3C trace context.",
    )
    top.add_argument(
        "--customer-id",
        default=os.environ.get("OUTPLAN_CUSTOMER_ID"),
        help="the customer (default: $OUTPLAN_CUSTOMER_ID)",
    )
    top.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the reply")
    top.add_argument("--message-id", help="idempotency key for a change (default: a new UUID)")
    sub = top.add_subparsers(dest="op", required=True)
    listing = sub.add_parser("list", help="GET /outplans")
    listing.add_argument("--page-size", type=int, default=100)
    listing.add_argument("--page-token", default="")
    get = sub.add_parser("get", help="GET /outplans/{id}")
    get.add_argument("id")
    get.add_argument("--include-deleted", action="store_true")
    create = sub.add_parser("create", help="POST /outplans")
    create.add_argument("--name", default="")
    create.add_argument("--detail", default="")
    _dial_arguments(create, required=False)
    basic = sub.add_parser("update-basic-info", help="PUT /outplans/{id}")
    basic.add_argument("id")
    basic.add_argument("--name", required=True)
    basic.add_argument("--detail", required=True)
    dial = sub.add_parser("update-dial-info", help="PUT /outplans/{id}/dial_info")
    dial.add_argument("id")
    _dial_arguments(dial, required=True)
    delete = sub.add_parser("delete", help="DELETE /outplans/{id}")
    delete.add_argument("id")
    token = sub.add_parser(
        "token", help="print a short-lived JWT for the customer, signed with OUTPLAN_JWT_SECRET (HS256)"
    )
    token.add_argument(
        "--ttl", type=int, help="seconds it is valid (default: OUTPLAN_TOKEN_TTL_SECONDS, 3600)"
    )
    for command in (create, dial):
        command.add_argument("--json", dest="body_json", help="extra body fields as a JSON object")
    return top


def request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """``(command name, JSON body)`` for the parsed ``args``. Dial options not given are left out of
    a create (the worker's defaults apply); ``--json`` fields are merged last and win."""
    body: dict[str, Any] = {"customer_id": args.customer_id}
    if args.op == "list":
        return names.LIST, {**body, "page_size": args.page_size, "page_token": args.page_token}
    if args.op == "get":
        return names.GET, {**body, "id": args.id, "include_deleted": args.include_deleted}
    if args.op == "delete":
        return names.DELETE, {**body, "id": args.id}
    if args.op == "update-basic-info":
        return names.UPDATE_BASIC_INFO, {**body, "id": args.id, "name": args.name, "detail": args.detail}
    dial: dict[str, Any] = {}
    if args.source_type or args.source_target:
        dial["source"] = {"type": args.source_type, "target": args.source_target}
    if args.dial_timeout is not None:
        dial["dial_timeout"] = args.dial_timeout
    if args.try_interval is not None:
        dial["try_interval"] = args.try_interval
    for i, count in enumerate(args.max_try_count or []):
        dial[f"max_try_count_{i}"] = count
    extra = json.loads(args.body_json) if args.body_json else {}
    if args.op == "create":
        return names.CREATE, {**body, "name": args.name, "detail": args.detail, **dial, **extra}
    return names.UPDATE_DIAL_INFO, {**body, "id": args.id, **dial, **extra}


def report(reply: Reply) -> int:
    """Print the reply's ``data`` as JSON on stdout and return 0, or its error and one line per
    field on stderr and return the exit status: 3 for 400, 4 for 404, 5 for 409, 6 for any other."""
    if reply.ok:
        print(json.dumps(reply.data, indent=2, ensure_ascii=False))
        return 0
    assert reply.error is not None
    print(f"error {reply.status_code} {reply.error.reason}: {reply.error.message}", file=sys.stderr)
    for detail in reply.error.details:
        print(f"  {detail.field}: {detail.message}", file=sys.stderr)
    return EXIT_BY_STATUS.get(reply.status_code, EXIT_WORKER_ERROR)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """Send the command and wait ``--timeout`` seconds for the reply; returns the exit status
    (``report``'s, 6 when the reply is not a reply, 7 when the broker cannot be reached, refuses
    the command or nobody answers, 78 when its TLS certificate is refused)."""
    command, body = request(args)
    try:
        connection = await connect_first(settings.amqp_urls, timeout=args.timeout)
    except _BROKER_ERRORS as exc:
        refused = certificate_refusal("broker", "OUTPLAN_AMQP_URL", exc)
        if refused is not None:  # no server to wait for: this configuration cannot work
            print(f"outplanctl: {refused}", file=sys.stderr)
            return EX_CONFIG
        print(f"outplanctl: cannot reach the broker: {type(exc).__name__}", file=sys.stderr)
        return EXIT_NO_ANSWER
    async with connection:
        client = OutplanClient(connection, exchange=settings.command_exchange, timeout=args.timeout)
        try:
            # Its channel and reply consumer: the broker may still drop or refuse the connection here.
            await client.start()
        except _BROKER_ERRORS as exc:
            print(f"outplanctl: cannot reach the broker: {type(exc).__name__}", file=sys.stderr)
            return EXIT_NO_ANSWER
        try:
            with tracing.environment_context():
                reply = await client.send(command, body, message_id=args.message_id)
        except TimeoutError:
            print(f"outplanctl: no reply within {args.timeout} s (is a worker running?)", file=sys.stderr)
            return EXIT_NO_ANSWER
        except (ConnectionError, aio_pika.exceptions.ChannelInvalidStateError) as exc:
            print(f"outplanctl: lost the broker connection: {type(exc).__name__}", file=sys.stderr)
            return EXIT_NO_ANSWER
        except aio_pika.exceptions.AMQPError as exc:
            print(f"outplanctl: the broker refused the request: {exc}", file=sys.stderr)
            return EXIT_NO_ANSWER
        except UnreadableReply as exc:
            print(f"outplanctl: {exc}", file=sys.stderr)
            return EXIT_WORKER_ERROR
    return report(reply)


def token(args: argparse.Namespace) -> int:
    """Print a JWT for ``--customer-id`` that the gateway accepts, valid ``--ttl`` seconds (1 to
    86400); returns 0, or 2 (one line on stderr) when the customer id is not a UUID, the ttl is out
    of range, the settings are invalid, no ``OUTPLAN_JWT_SECRET`` is configured, or PyJWT (the
    ``gateway`` extra) is not installed."""
    from ..gateway.settings import load as load_gateway

    try:
        customer_id = uuid.UUID(args.customer_id)
    except ValueError:
        print("outplanctl: --customer-id must be a UUID", file=sys.stderr)
        return 2
    if args.ttl is not None and not 1 <= args.ttl <= 86400:
        print(
            "outplanctl: --ttl must be 1 to 86400 seconds: tokens minted here are short-lived",
            file=sys.stderr,
        )
        return 2
    try:
        settings = load_gateway()
    except InvalidSettings as exc:
        return exc.report("outplanctl")
    try:
        from ..gateway.auth import KeyProblem, mint
    except ImportError as exc:
        print(f"outplanctl: {exc.name} is missing: pip install 'outplan-worker[gateway]'", file=sys.stderr)
        return 2
    try:
        print(mint(settings, customer_id, ttl=args.ttl))
    except KeyProblem as exc:
        print(f"outplanctl: cannot mint a token: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``outplanctl`` with ``argv`` (``sys.argv[1:]`` when ``None``); returns the exit status, 2
    for a missing customer, a ``--json`` that is not an object or invalid settings."""
    args = parser().parse_args(argv)
    if not args.customer_id:
        print("outplanctl: --customer-id (or OUTPLAN_CUSTOMER_ID) is required", file=sys.stderr)
        return 2
    if getattr(args, "body_json", None):
        try:
            if not isinstance(json.loads(args.body_json), dict):
                raise ValueError
        except ValueError:
            print("outplanctl: --json must be a JSON object", file=sys.stderr)
            return 2
    if args.op == "token":
        return token(args)
    try:
        settings = load()
    except InvalidSettings as exc:
        return exc.report("outplanctl")
    # Unconfigured, the AMQP libraries' log records (tracebacks of a dropped connection, say) would
    # reach stderr through logging's last resort; outplanctl reports those failures in one line.
    for name in ("aiormq", "aio_pika"):
        logging.getLogger(name).addHandler(logging.NullHandler())
    return asyncio.run(run(args, settings))


if __name__ == "__main__":
    sys.exit(main())
