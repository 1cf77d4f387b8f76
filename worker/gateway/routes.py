"""The tutorial's six calls: each HTTP request becomes one command, its reply the HTTP answer.

| call | command |
|---|---|
| ``GET /v1.0/outplans?page_size=&page_token=`` | ``outplan.list`` |
| ``GET /v1.0/outplans/{id}`` (``?include_deleted=true``) | ``outplan.get`` |
| ``POST /v1.0/outplans`` | ``outplan.create`` |
| ``PUT /v1.0/outplans/{id}`` | ``outplan.update_basic_info`` |
| ``PUT /v1.0/outplans/{id}/dial_info`` | ``outplan.update_dial_info`` |
| ``DELETE /v1.0/outplans/{id}`` | ``outplan.delete`` |

The customer is the token's (``auth``); the body is the tutorial's, without ``customer_id``
(one that is sent must be the token's: else 403) and without ``id`` (the path's; one that is
sent must be the same: else 400). Field rules are the worker's: the gateway passes the fields on
and the worker names what is wrong. Before anything is sent, the gateway refuses on its own: a
body over 64 KiB (413, from ``Content-Length`` or while reading), a content type other than JSON
(415), a body that is not strict JSON or not an object (400, as the worker would say it), an
unknown or repeated query parameter (400), an ``Idempotency-Key`` that cannot be an AMQP
``message_id`` (400).

Answers: the reply's ``status_code``, with its ``data`` (outplans without ``customer_id``, as in
the tutorial) or its ``error``; 503 when the broker cannot be reached, 504 when no reply comes in
time, 502 when the reply cannot be read.
"""

import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson
import structlog
from opentelemetry import propagate
from starlette.requests import Request
from starlette.responses import Response

from contracts import ErrorDetail, Reply, names, replies
from contracts.client import UnreadableReply
from contracts.fields import BODY_MAX_BYTES

from ..requests import strict_json_problems
from . import errors, metrics
from .auth import TOKEN_TWICE, Unauthenticated, Verifier, token_from
from .broker import Broker, BrokerUnavailable, NoReply

log = structlog.get_logger("outplan_worker.gateway")

PREFIX: Final = "/v1.0"
COLLECTION: Final = f"{PREFIX}/outplans"
ITEM: Final = f"{COLLECTION}/{{id}}"
DIAL_INFO: Final = f"{ITEM}/dial_info"
IDEMPOTENCY_KEY: Final = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX: Final = 255  # an AMQP short string (message_id) holds 255 bytes
RETRY_AFTER_SECONDS: Final = "2"
_INTEGER = re.compile(r"-?[0-9]{1,18}")
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")


@dataclass(frozen=True)
class Call:
    """One route: ``method`` and ``path`` (a Starlette template), the ``command`` it sends, the
    query parameters it takes besides ``token``, and whether it reads a JSON body."""

    method: str
    path: str
    command: str
    query: tuple[str, ...] = ()
    body: bool = False
    summary: str = ""


CALLS: Final = (
    Call("GET", COLLECTION, names.LIST, ("page_size", "page_token"), summary="Get list of outplans"),
    Call("GET", ITEM, names.GET, ("include_deleted",), summary="Get detail of outplan"),
    Call("POST", COLLECTION, names.CREATE, body=True, summary="Create a new outplan"),
    Call("PUT", ITEM, names.UPDATE_BASIC_INFO, body=True, summary="Update outplan's basic info"),
    Call("PUT", DIAL_INFO, names.UPDATE_DIAL_INFO, body=True, summary="Update outplan's dial info"),
    Call("DELETE", ITEM, names.DELETE, summary="Delete outplan"),
)


def amqp_headers(request: Request) -> dict[str, Any]:
    """The AMQP headers a request's command carries: the caller's trace context, passed on.

    The one place where what travels with a command beyond its body is decided. The trace context
    of the HTTP request (W3C ``traceparent``/``tracestate``, and ``baggage``: whatever the global
    propagator, ``OTEL_PROPAGATORS``, reads) is extracted and written into the command's headers
    with the same propagator, so the worker processes the command inside the caller's trace. The
    gateway records no span of its own. A context the propagator cannot read is left out (an
    empty table), as if none was sent.
    """
    carrier: dict[str, Any] = {}
    propagate.inject(carrier, context=propagate.extract(request.headers))
    return carrier


class Refused(Exception):
    """A request the gateway answers itself, before or instead of a command: ``response``."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _bad(reason: str, message: str, field: str | None = None, status: int = 400) -> Refused:
    details = [ErrorDetail(field=field, message=message)] if field is not None else []
    return Refused(errors.error_response(status, reason, message, details))


class Gateway:
    """The endpoints: ``endpoint(call)`` is the Starlette endpoint of one ``Call``.

    ``verifier`` checks tokens, ``broker`` sends commands; ``headers`` builds each command's AMQP
    headers (``amqp_headers``).
    """

    def __init__(
        self,
        verifier: Verifier,
        broker: Broker,
        headers: Callable[[Request], dict[str, Any]] = amqp_headers,
    ) -> None:
        self._verifier = verifier
        self._broker = broker
        self._headers = headers

    def endpoint(self, call: Call) -> Callable[[Request], Awaitable[Response]]:
        """The endpoint answering ``call``, counted in the gateway's metrics under its route."""

        async def answer(request: Request) -> Response:
            started = time.perf_counter()
            try:
                response = await self._answer(call, request)
            except Refused as refused:
                response = refused.response
            metrics.LATENCY.labels(call.path, call.method).observe(time.perf_counter() - started)
            metrics.REQUESTS.labels(call.path, call.method, str(response.status_code)).inc()
            return response

        answer.__name__ = call.command.replace(".", "_")
        return answer

    async def _answer(self, call: Call, request: Request) -> Response:
        customer = self._customer(request)
        fields: dict[str, Any] = {}
        if call.body:
            fields = await _body(request)
            _check_customer(fields, customer)
        fields["customer_id"] = str(customer)
        if "id" in request.path_params:
            path_id = request.path_params["id"]
            _check_id(fields, path_id)
            fields["id"] = path_id
        fields.update(_query(call, request))
        reply = await self._send(call, fields, _idempotency_key(request), request)
        if reply.error is not None:
            return errors.json_response(reply.status_code, reply.error.model_dump_json().encode())
        return errors.json_response(reply.status_code, orjson.dumps(_public(reply.data)))

    def _customer(self, request: Request) -> uuid.UUID:
        try:
            token = token_from(request.query_params.get("token"), request.headers.get("authorization"))
            return self._verifier.customer(token)
        except Unauthenticated as exc:
            status = 400 if exc.reason == TOKEN_TWICE else 401
            challenge = 'Bearer realm="outplan"'
            if status == 401 and exc.reason != "TOKEN_MISSING":
                # RFC 6750 §3: the error code of a token that was sent but cannot be used.
                description = exc.message.replace('"', "'").replace("\\", "/")
                challenge += f', error="invalid_token", error_description="{description}"'
            raise Refused(
                errors.error_response(
                    status, exc.reason, exc.message, headers={"WWW-Authenticate": challenge}
                )
            ) from None

    async def _send(self, call: Call, fields: dict[str, Any], key: str | None, request: Request) -> Reply:
        try:
            return await self._broker.call(
                call.command, orjson.dumps(fields), message_id=key, headers=self._headers(request)
            )
        except BrokerUnavailable as exc:
            raise Refused(
                errors.error_response(
                    503, errors.BROKER_UNAVAILABLE, str(exc), headers={"Retry-After": RETRY_AFTER_SECONDS}
                )
            ) from None
        except NoReply as exc:
            log.warning("no reply in time", command=call.command, idempotency_key=key)
            raise Refused(errors.error_response(504, errors.NO_REPLY, str(exc))) from None
        except UnreadableReply as exc:
            log.warning("unreadable reply", command=call.command, error=str(exc)[:300])
            raise Refused(errors.error_response(502, errors.UNREADABLE_REPLY, str(exc))) from None


async def _body(request: Request) -> dict[str, Any]:
    """The request's JSON object, read up to ``BODY_MAX_BYTES``; raises ``Refused`` (413, 415, 400)."""
    content_type = request.headers.get("content-type")
    if content_type is not None and not _is_json(content_type):
        raise _bad(
            replies.UNSUPPORTED_CONTENT_TYPE,
            f"Content-Type {content_type!r} is not supported; send application/json (UTF-8)",
            "Content-Type",
            status=415,
        )
    too_large = _bad(
        replies.BODY_TOO_LARGE,
        f"the body is larger than {BODY_MAX_BYTES} bytes, the most a command may carry",
        status=413,
    )
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > BODY_MAX_BYTES:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > BODY_MAX_BYTES:
            raise too_large
        chunks.append(chunk)
    body = b"".join(chunks)
    if details := strict_json_problems(body):
        message = "the body is not strict JSON: " + "; ".join(d.message for d in details)
        raise Refused(errors.error_response(400, replies.MALFORMED_JSON, message, details))
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _bad(replies.MALFORMED_JSON, f"the body is not UTF-8 JSON: {exc}") from None
    if not isinstance(document, dict):
        raise _bad(replies.NOT_AN_OBJECT, "the body must be a JSON object")
    return document


def _is_json(content_type: str) -> bool:
    media, _, parameters = content_type.partition(";")
    if media.strip().lower() != "application/json":
        return False
    charset = re.search(r"charset\s*=\s*\"?([^\";\s]+)", parameters, re.IGNORECASE)
    return charset is None or charset.group(1).lower() in ("utf-8", "utf8")


def _check_customer(fields: dict[str, Any], customer: uuid.UUID) -> None:
    """A ``customer_id`` in the body must be the token's: 403 when it names another customer."""
    if "customer_id" not in fields:
        return
    sent = fields["customer_id"]
    try:
        named = uuid.UUID(sent) if isinstance(sent, str) else None
    except ValueError:
        named = None
    if named is None:
        raise _bad(
            replies.VALIDATION_FAILED,
            "customer_id must be a UUID, the token's customer; better leave it out: the token names you",
            "customer_id",
        )
    if named != customer:
        raise _bad(
            errors.CUSTOMER_MISMATCH,
            "customer_id in the body is not the token's customer; leave it out: the token says who you are",
            "customer_id",
            status=403,
        )


def _check_id(fields: dict[str, Any], path_id: str) -> None:
    """An ``id`` in the body must be the path's."""
    if "id" not in fields:
        return
    sent = fields["id"]
    try:
        same = isinstance(sent, str) and uuid.UUID(sent) == uuid.UUID(path_id)
    except ValueError:
        same = False
    if not same:
        raise _bad(
            replies.VALIDATION_FAILED,
            "id in the body differs from the outplan id in the path; leave it out of the body",
            "id",
        )


def _query(call: Call, request: Request) -> dict[str, Any]:
    """The call's query parameters as command fields: integers and booleans given their JSON type
    when they read as one (else passed as text, and the worker names the field)."""
    fields: dict[str, Any] = {}
    seen: set[str] = set()
    for name, value in request.query_params.multi_items():
        if name in seen:
            raise _bad(replies.VALIDATION_FAILED, f"the query parameter {name} is given more than once", name)
        seen.add(name)
        if name == "token":
            continue
        if name not in call.query:
            takes = ", ".join(("token", *call.query))
            raise _bad(
                replies.VALIDATION_FAILED,
                f"unknown query parameter {name!r}; {call.method} {call.path} takes {takes}",
                name,
            )
        if name == "page_size" and _INTEGER.fullmatch(value):
            fields[name] = int(value)
        elif name == "include_deleted" and value.lower() in ("true", "false"):
            fields[name] = value.lower() == "true"
        else:
            fields[name] = value
    return fields


def _idempotency_key(request: Request) -> str | None:
    """The ``Idempotency-Key`` header as the command's ``message_id``: 1 to 255 visible ASCII
    characters (spaces inside allowed), as a plain value or a quoted Structured Field string
    (draft-ietf-httpapi-idempotency-key-header); ``None`` when absent."""
    value = request.headers.get(IDEMPOTENCY_KEY.lower())
    if value is None:
        return None
    key = value.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if len(key) > IDEMPOTENCY_KEY_MAX or not _VISIBLE_ASCII.fullmatch(key):
        raise _bad(
            errors.INVALID_IDEMPOTENCY_KEY,
            f"{IDEMPOTENCY_KEY} must be 1 to {IDEMPOTENCY_KEY_MAX} visible ASCII characters (a UUID, say)",
            IDEMPOTENCY_KEY,
        )
    return key


def _public(data: Any) -> Any:
    """The reply's data as the tutorial shows it: outplans without ``customer_id`` (the caller's own)."""
    if isinstance(data, dict):
        if isinstance(data.get("result"), list):
            return {**data, "result": [_public(item) for item in data["result"]]}
        return {k: v for k, v in data.items() if k != "customer_id"}
    return data
