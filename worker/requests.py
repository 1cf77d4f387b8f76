"""Turn one raw AMQP message into a validated request, or a 400 that says why not.

Pure: no I/O, so every rule is unit-tested without a broker. Total: whatever the input, a
request handed on can be stored and queried (no string PostgreSQL refuses, a usable page
position), so every fault an input can cause is answered here, once, naming the field.
"""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import ValidationError

from contracts import (
    COMMANDS,
    Command,
    ErrorDetail,
    ErrorInfo,
    ListOutplans,
    Reply,
    replies,
    summarise,
    validation_details,
)
from contracts.errors import unstorable_details
from contracts.fields import BODY_MAX_BYTES, unstorable

from . import paging

MESSAGE_ID_MAX = 255


@dataclass(frozen=True, slots=True)
class Request:
    command: Command
    message_id: str | None
    correlation_id: str | None
    body_hash: bytes


@dataclass(frozen=True, slots=True)
class Rejection:
    """Invalid input: answered 400 and dead-lettered with these reasons, never requeued."""

    reason: str
    message: str
    details: list[ErrorDetail] = field(default_factory=list)
    command: str | None = None
    status: str = replies.INVALID_ARGUMENT
    status_code: int = 400

    def reply(self) -> Reply:
        return Reply(
            status_code=self.status_code,
            error=ErrorInfo(status=self.status, reason=self.reason, message=self.message, details=self.details),
        )


def command_name(routing_key: str | None, type_: str | None) -> str | None:
    """The routing key on the command exchange, else the ``type`` property."""
    for candidate in (routing_key, type_):
        if candidate in COMMANDS:
            return candidate
    return None


def _json_content_type(content_type: str | None) -> bool:
    if not content_type:
        return True  # absent: taken as JSON, the only format there is
    media, _, params = content_type.partition(";")
    if media.strip().lower() != "application/json":
        return False
    charset = params.strip().lower()
    return charset in ("", "charset=utf-8", "charset=\"utf-8\"")


def decode(
    body: bytes,
    *,
    content_type: str | None,
    routing_key: str | None,
    type_: str | None,
    message_id: str | None,
    correlation_id: str | None,
    unreadable: Mapping[str, str] | None = None,
) -> Request | Rejection:
    """The request a delivery carries, or the 400 that says why there is none. Total: never raises.

    :param body: the message body (bytes).
    :param unreadable: properties and headers the frame decoder could not read, with the reason
        for each (``worker.messaging.lenient_frames``): refused ``INVALID_PROPERTIES``, naming them.
    The other parameters are the AMQP properties and the routing key as delivered.
    """
    name = command_name(routing_key, type_)
    if unreadable:
        details = [ErrorDetail(field=prop, message=why) for prop, why in unreadable.items()]
        return Rejection(
            replies.INVALID_PROPERTIES,
            "the message's " + "; ".join(f"{d.field} is {d.message}" for d in details)[:900]
            + "; send AMQP properties and headers as the AMQP 0-9-1 spec defines them (short strings in UTF-8)",
            details, command=name,
        )
    if len(body) > BODY_MAX_BYTES:
        return Rejection(
            replies.BODY_TOO_LARGE,
            f"the body is {len(body)} bytes; at most {BODY_MAX_BYTES} bytes are accepted",
            command=name,
        )
    if not _json_content_type(content_type):
        return Rejection(
            replies.UNSUPPORTED_CONTENT_TYPE,
            f"content_type {content_type!r} is not supported; send application/json (UTF-8)",
            command=name,
        )
    if name is None:
        return Rejection(
            replies.UNKNOWN_COMMAND,
            f"unknown command (routing key {routing_key!r}, type {type_!r}); expected one of "
            + ", ".join(COMMANDS),
        )
    model = COMMANDS[name]
    if model.mutates and not message_id:
        return Rejection(
            replies.MESSAGE_ID_REQUIRED,
            f"{name} changes state and must carry the AMQP message_id property (the idempotency key)",
            command=name,
        )
    if message_id is not None and (problem := _message_id_problem(message_id)):
        return Rejection(replies.VALIDATION_FAILED, problem, [ErrorDetail(field="message_id", message=problem)],
                         command=name)
    try:
        command = model.model_validate_json(body)
    except ValidationError as exc:
        return _invalid(exc, name, body)
    if isinstance(command, ListOutplans):
        try:
            paging.decode(command.page_token)
        except paging.InvalidPageToken as exc:
            details = [ErrorDetail(field="page_token", message=str(exc))]
            return Rejection(replies.VALIDATION_FAILED, str(exc), details, command=name)
    return Request(
        command=command,
        message_id=message_id,
        correlation_id=correlation_id,
        body_hash=hashlib.sha256(name.encode() + b"\0" + body).digest(),
    )


def _message_id_problem(message_id: str) -> str | None:
    """Why ``message_id`` cannot be the idempotency key (it is stored as PostgreSQL text)."""
    if len(message_id) > MESSAGE_ID_MAX:
        return f"message_id must be at most {MESSAGE_ID_MAX} characters"
    problem = unstorable(message_id)
    return None if problem is None else f"message_id {problem}"


def _invalid(exc: ValidationError, name: str, body: bytes) -> Rejection:
    first = exc.errors(include_url=False, include_input=False)[0]
    if first["type"] == "json_invalid":
        if details := unstorable_details(body):  # JSON, but with a string no database can hold
            return Rejection(replies.VALIDATION_FAILED, summarise(details), details, command=name)
        return Rejection(
            replies.MALFORMED_JSON, f"the body is not UTF-8 JSON: {first['msg']}", command=name
        )
    if not first["loc"] and first["type"] in ("model_type", "dict_type"):
        return Rejection(replies.NOT_AN_OBJECT, "the body must be a JSON object", command=name)
    details = validation_details(exc)
    return Rejection(replies.VALIDATION_FAILED, summarise(details), details, command=name)
