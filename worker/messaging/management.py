"""Compare the broker's exchanges and queues with ``topology.plan`` through the management API.

A passive declare proves only that an entity exists (AMQP 0-9-1: the server ignores the other
fields). With ``OUTPLAN_MANAGEMENT_URL`` set, the worker also reads each one from RabbitMQ's HTTP
API (``GET /api/exchanges/{vhost}/{name}`` and ``GET /api/queues/{vhost}/{name}``, "HTTP API
Reference", https://www.rabbitmq.com/docs/http-api-reference) and compares what a declaration
would have fixed: an exchange's type and durability, a queue's durability and its arguments
(compared exactly: an argument the worker does not declare is a difference too, since a
declaration would then fail with ``PRECONDITION_FAILED``). Policies are not compared: they are
the operator's way of changing a queue without re-declaring it.
"""

import asyncio
import base64
import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from ..refusals import Misconfigured
from .topology import ExchangeSpec, Plan, QueueSpec


def exchange_differences(expected: ExchangeSpec, reported: dict[str, Any]) -> list[str]:
    """What differs between ``expected`` and the API's JSON object for that exchange, one phrase
    each (``exchange 'x': type is fanout, expected topic``); empty when they agree."""
    found = []
    if reported.get("type") != expected.type:
        found.append(f"exchange {expected.name!r}: type is {reported.get('type')}, expected {expected.type}")
    if bool(reported.get("durable")) != expected.durable:
        found.append(
            f"exchange {expected.name!r}: durable is {reported.get('durable')}, expected {expected.durable}"
        )
    return found


def queue_differences(expected: QueueSpec, reported: dict[str, Any]) -> list[str]:
    """What differs between ``expected`` and the API's JSON object for that queue: durability,
    and each argument missing, different or not declared by the worker; empty when they agree."""
    found = []
    if bool(reported.get("durable")) != expected.durable:
        found.append(
            f"queue {expected.name!r}: durable is {reported.get('durable')}, expected {expected.durable}"
        )
    arguments: dict[str, Any] = reported.get("arguments") or {}
    want = expected.arguments
    for key in sorted(set(want) | set(arguments)):
        if key not in arguments:
            found.append(f"queue {expected.name!r}: argument {key} is missing, expected {want[key]!r}")
        elif key not in want:
            found.append(
                f"queue {expected.name!r}: argument {key} is {arguments[key]!r}, not declared by the worker"
            )
        elif arguments[key] != want[key]:
            found.append(
                f"queue {expected.name!r}: argument {key} is {arguments[key]!r}, expected {want[key]!r}"
            )
    return found


def vhost_of(amqp_url: str) -> str:
    """The virtual host an AMQP URI names (its path, percent-decoded; ``/`` when empty). Of
    several comma-separated URIs, the first: they all name the same virtual host."""
    path = urlsplit(amqp_url.split(",")[0].strip()).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def _get(url: str, path: str) -> dict[str, Any] | None:
    """GET ``path`` under ``url`` (credentials taken from its user info, sent as basic auth);
    the JSON object, or ``None`` for 404. Raises ``Misconfigured`` for 401/403 and any other
    HTTP status, ``OSError`` when the API cannot be reached."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    request = urllib.request.Request(base + path, headers={"Accept": "application/json"})
    if parts.username is not None:
        token = f"{parts.username}:{parts.password or ''}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(token).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body: dict[str, Any] = json.loads(response.read())
            return body
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise Misconfigured(
            f"the RabbitMQ management API answered {exc.code} {exc.reason} to GET {path}: the user in"
            " OUTPLAN_MANAGEMENT_URL needs the monitoring tag and access to the virtual host"
        ) from None


def differences(url: str, vhost: str, topology: Plan) -> list[str]:
    """Every difference between ``topology`` and what the management API at ``url`` reports
    for ``vhost`` (an entity that does not exist is one too). Blocking: see ``compare``."""
    v = quote(vhost, safe="")
    found = []
    for x in topology.exchanges:
        reported = _get(url, f"/api/exchanges/{v}/{quote(x.name, safe='')}")
        found += (
            [f"exchange {x.name!r} does not exist"] if reported is None else exchange_differences(x, reported)
        )
    for q in topology.queues:
        reported = _get(url, f"/api/queues/{v}/{quote(q.name, safe='')}")
        found += [f"queue {q.name!r} does not exist"] if reported is None else queue_differences(q, reported)
    return found


async def compare(url: str, vhost: str, topology: Plan) -> None:
    """Compare ``topology`` with the broker's through its management API (in a thread).

    :raises Misconfigured: one line listing every difference, or the API refused the request.
    :raises OSError: the API could not be reached (``TimeoutError`` after 10 s).
    """
    found = await asyncio.to_thread(differences, url, vhost, topology)
    if found:
        raise Misconfigured(
            "the broker's topology differs from what this worker declares: "
            + "; ".join(found)
            + " (fix the broker's definitions: deploy/rabbitmq/definitions.json)"
        )
