"""Turn one raw AMQP message into a validated request, or a 400 that says why not.

Pure: no I/O, so every rule is unit-tested without a broker. Total: whatever the input, a
request handed on can be stored and queried (no string PostgreSQL refuses, a usable page
position), so every fault an input can cause is answered here, once, naming the field.

The body is read as strict JSON (RFC 8259): a name twice in one object, and NaN or Infinity,
are refused as ``MALFORMED_JSON``, because parsers disagree about what such text means and
the command must mean the same to every reader of the same bytes.
"""

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

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
from contracts.errors import field_path, unstorable_details
from contracts.fields import BODY_MAX_BYTES, unstorable

from . import paging

MESSAGE_ID_MAX = 255
STRICT_JSON_DETAILS_MAX = 10  # a body may repeat thousands of keys; the reply names the first ones


@dataclass(frozen=True, slots=True)
class Request:
    """A valid command and what identifies it for idempotency.

    ``fingerprint`` is what the command means (see ``fingerprint()``): two deliveries with the
    same message_id and the same fingerprint are one command. ``raw_body_hash`` is the
    fingerprint of earlier versions, sha256 of the command name, a NUL and the raw body, which
    idempotency records written before the upgrade hold. Both are computed for changes only
    (queries get no idempotency record); they are empty for queries.
    """

    command: Command
    message_id: str | None
    correlation_id: str | None
    fingerprint: bytes
    # Remove, with the fallback in ``is_recorded_as``, once ``idempotency_retention_hours`` have
    # passed since every worker runs with fingerprints: by then the purge has deleted every
    # record that holds a raw-body hash.
    raw_body_hash: bytes
    # The W3C trace context the command's events carry (the CloudEvents distributed tracing
    # extension): the process span's, or with the OpenTelemetry API alone the incoming one.
    traceparent: str | None = None
    tracestate: str | None = None

    def is_recorded_as(self, recorded: bytes) -> bool:
        """Whether an idempotency record's hash is this request's: its fingerprint, or (for
        records written before the upgrade) the hash of its raw body."""
        return recorded == self.fingerprint or recorded == self.raw_body_hash


@dataclass(frozen=True, slots=True)
class Rejection:
    """Invalid input: answered 400 and dead-lettered with these reasons, never requeued.

    ``reason`` is one of ``contracts.replies``' reasons, ``message`` one line naming what is wrong,
    ``details`` one entry per failing field or property, ``command`` the command name when known
    (for logs and metrics).
    """

    reason: str
    message: str
    details: list[ErrorDetail] = field(default_factory=list)
    command: str | None = None
    status: str = replies.INVALID_ARGUMENT
    status_code: int = 400

    def reply(self) -> Reply:
        """The 400 reply carrying ``reason``, ``message`` and ``details``."""
        return Reply(
            status_code=self.status_code,
            error=ErrorInfo(
                status=self.status, reason=self.reason, message=self.message, details=self.details
            ),
        )


def command_name(routing_key: str | None, type_: str | None) -> str | None:
    """The routing key on the command exchange, else the ``type`` property."""
    for candidate in (routing_key, type_):
        if candidate in COMMANDS:
            return candidate
    return None


_UTF8_NAMES = frozenset({"utf-8", "utf8"})  # utf8: a common alias (IANA lists only UTF-8)
_IDENTITY = frozenset({"", "identity"})
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)  # RFC 9110 §5.6.4: a backslash quotes the next character


def _json_content_type(content_type: str | None) -> bool:
    """Whether ``content_type`` is ``application/json`` in UTF-8, however it is spelled.

    RFC 9110 §8.3.1: the type, subtype and parameter names are case-insensitive, a parameter
    value may be a token or a quoted string, and empty parameters (a stray ``;``) are allowed;
    charset names are case-insensitive (RFC 2978). The only parameter accepted is ``charset``,
    as ``utf-8`` or ``utf8``: ``application/json; Charset="UTF8"`` is JSON in UTF-8. A missing
    content_type is taken as JSON, the only format there is.
    """
    if not content_type:
        return True
    media, *parameters = content_type.split(";")
    if media.strip().lower() != "application/json":
        return False
    for parameter in parameters:
        name, equals, value = parameter.strip().partition("=")
        if not (name or equals):
            continue  # an empty parameter
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = _QUOTED_PAIR.sub(r"\1", value[1:-1])
        if name.strip().lower() != "charset" or value.lower() not in _UTF8_NAMES:
            return False
    return True


def _identity_encoding(content_encoding: str | None) -> bool:
    """Whether the body is sent as it is: no content_encoding, an empty one or ``identity``
    (any case). Compressed bodies are refused rather than decoded: one format to read, and no
    body that expands to gigabytes in the worker."""
    return content_encoding is None or content_encoding.strip().lower() in _IDENTITY


def decode(
    body: bytes,
    *,
    content_type: str | None,
    content_encoding: str | None = None,
    routing_key: str | None,
    type_: str | None,
    message_id: str | None,
    correlation_id: str | None,
    unreadable: Mapping[str, str] | None = None,
    traceparent: str | None = None,
    tracestate: str | None = None,
) -> Request | Rejection:
    """The request a delivery carries, or the 400 that says why there is none. Total: never raises.

    :param body: the message body (bytes): a JSON object, UTF-8, not compressed.
    :param content_encoding: the AMQP property; anything but none, ``""`` or ``identity`` is
        refused ``UNSUPPORTED_CONTENT_ENCODING``.
    :param unreadable: properties and headers the frame decoder could not read, with the reason
        for each (``worker.messaging.lenient_frames``): refused ``INVALID_PROPERTIES``, naming them.
    :param traceparent: the command's trace context (``worker.observability.spans.CommandTrace``),
        carried into the request as it is, with ``tracestate``.
    The other parameters are the AMQP properties and the routing key as delivered.
    """
    name = command_name(routing_key, type_)
    if unreadable:
        details = [ErrorDetail(field=prop, message=why) for prop, why in unreadable.items()]
        return Rejection(
            replies.INVALID_PROPERTIES,
            "the message's "
            + "; ".join(f"{d.field} is {d.message}" for d in details)[:900]
            + "; send AMQP properties and headers as the AMQP 0-9-1 spec defines them"
            + " (short strings in UTF-8)",
            details,
            command=name,
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
    if not _identity_encoding(content_encoding):
        unsupported = (
            f"content_encoding {content_encoding!r} is not supported; send the body as plain "
            "UTF-8 JSON without a content_encoding (identity is accepted too)"
        )
        return Rejection(
            replies.UNSUPPORTED_CONTENT_ENCODING,
            unsupported,
            [ErrorDetail(field="content_encoding", message=unsupported)],
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
        return Rejection(
            replies.VALIDATION_FAILED,
            problem,
            [ErrorDetail(field="message_id", message=problem)],
            command=name,
        )
    if details := strict_json_problems(body):
        return _not_strict_json(details, name)
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
    recorded = model.mutates
    return Request(
        command=command,
        message_id=message_id,
        correlation_id=correlation_id,
        fingerprint=fingerprint(command) if recorded else b"",
        raw_body_hash=hashlib.sha256(name.encode() + b"\0" + body).digest() if recorded else b"",
        traceparent=traceparent,
        tracestate=tracestate,
    )


def fingerprint(command: Command) -> bytes:
    """What a command means, as 32 bytes: sha256 of its name, a NUL and its canonical JSON.

    The canonical JSON is the validated command with its defaults applied, as
    ``model_dump(mode="json")`` gives it, with keys sorted and no whitespace. So key order,
    whitespace, the case of a UUID, escapes, and a default sent or left out do not change it, nor
    does any spelling the validation normalises (a phone number with or without spaces); a
    different value in any field does. Note that a field added to a command with a default
    changes the fingerprint of every command of that kind.

    Written from the fields directly, which gives the same bytes as ``model_dump`` at a third of
    the cost (a unit test holds the two equal); a value that cannot be written so takes the
    ``model_dump`` way.
    """
    try:
        canonical = orjson.dumps(command.__dict__, default=_fields, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        canonical = json.dumps(
            command.model_dump(mode="json"), sort_keys=True, separators=(",", ":")
        ).encode()
    return hashlib.sha256(command.command.encode() + b"\0" + canonical).digest()


def _fields(value: object) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        return value.__dict__
    raise TypeError(f"{type(value).__name__} is not a field type the fingerprint writes")


class _Token(str):
    """``NaN``, ``Infinity`` or ``-Infinity`` where a value should be: kept to say where."""

    __slots__ = ()


class _Repeated(dict[str, Any]):
    """An object in which ``names`` (in the order they first appear) appear more than once."""

    names: list[str]


def _repeated_names(pairs: list[tuple[str, Any]]) -> list[str]:
    seen: set[str] = set()
    names: list[str] = []
    for name, _ in pairs:
        if name in seen and name not in names:
            names.append(name)
        seen.add(name)
    return names


_TOKENS = {token: _Token(token) for token in ("NaN", "Infinity", "-Infinity")}


_CONTAINERS = (dict, list, _Token)  # what may hold, or be, a problem
_LOCATE_BUDGET = 2_000  # objects and arrays walked to say where the problems are


def strict_json_problems(body: bytes) -> list[ErrorDetail]:
    """Where ``body`` is JSON only to a lenient parser: one detail per repeated key or non-number.

    RFC 8259 §4: the names in an object SHOULD be unique; when they are not, "the behavior of
    software that receives such an object is unpredictable" (some take the last, some the first,
    some refuse), so ``{"customer_id": A, "customer_id": B}`` could be A's to one reader and B's
    to another. §6: NaN and Infinity are not JSON numbers. The detail's ``field`` is the key's
    dotted path (``source.type``; ``items.0.name`` inside an array). At most
    ``STRICT_JSON_DETAILS_MAX`` details, in the order of the body; the last one says how many
    more there are.

    Empty when the body is strict JSON, and when it is not JSON at all: the validating parser
    then says why.

    Fast, without a parse in Python: a strict parse (which refuses NaN and Infinity and keeps
    one member per name) written out again compactly has as many ``:`` as the body exactly when
    no name repeated. Each member has one ``:`` outside strings, and the strings that survive the
    parse are written with the same colons as they were sent, except that a colon sent escaped
    (``\\u003a``) is written plain, so escapes are counted as colons; every dropped member takes
    at least its own ``:`` away. Only a body that is refused anyway (a repeated name, NaN, not
    JSON), or the rare one with an escaped backslash before ``u003a``, is parsed again, more
    slowly, to find out where.
    """
    try:
        compact = orjson.dumps(orjson.loads(body))
    except orjson.JSONDecodeError:  # NaN or Infinity, or not JSON
        return _problems(body)
    except orjson.JSONEncodeError:  # nested deeper than it writes
        return _problems(body)
    sent = body.count(b":") + body.count(b"\\u003a") + body.count(b"\\u003A")
    if sent == compact.count(b":"):
        return []
    return _problems(body)


def _problems(body: bytes) -> list[ErrorDetail]:
    """The exact answer, from a parse that sees every member and every token.

    The parse counts the problems exactly; a walk in document order then names where they are,
    visiting at most ``_LOCATE_BUDGET`` arrays and objects, so that a body built to make the walk
    long costs no more than one that is merely large. Past the budget, the rest are counted.
    """
    count = 0  # names repeated in an object, and NaN/Infinity tokens
    first: list[str] = []  # the first problem met, in case the walk cannot say where

    def on_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal count
        found = dict(pairs)
        if len(found) == len(pairs):
            return found
        repeated = _Repeated(found)
        repeated.names = _repeated_names(pairs)
        count += len(repeated.names)
        if not first:
            first.append("the key " + json.dumps(repeated.names[0]))
        return repeated

    def on_constant(token: str) -> _Token:
        nonlocal count
        count += 1
        if not first:
            first.append(token)
        return _TOKENS[token]

    try:
        document = json.loads(body.decode("utf-8"), object_pairs_hook=on_object, parse_constant=on_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return []
    if not count:
        return []
    details: list[ErrorDetail] = []
    budget = _LOCATE_BUDGET
    pending: list[tuple[tuple[int | str, ...], Any]] = [((), document)]
    while pending and len(details) < STRICT_JSON_DETAILS_MAX and budget:  # depth first, in body order
        loc, value = pending.pop()
        budget -= 1
        if isinstance(value, _Token):
            where = field_path(loc) or "the body"
            details.append(
                ErrorDetail(
                    field=field_path(loc),
                    message=(
                        f"{where} is {value}, which is not a JSON number (RFC 8259 §6 has no NaN or "
                        "Infinity); send a number"
                    ),
                )
            )
        elif isinstance(value, dict):
            for name in value.names if isinstance(value, _Repeated) else ():
                path = field_path((*loc, name))
                details.append(
                    ErrorDetail(
                        field=path,
                        message=(
                            f"the key {path} appears more than once in one object; JSON readers disagree "
                            "about which value counts (RFC 8259 §4), so send each key once"
                        ),
                    )
                )
            pending.extend(
                reversed(
                    [
                        ((*loc, key), item)
                        for key, item in value.items()
                        if isinstance(item, _CONTAINERS) and item
                    ]
                )
            )
        elif isinstance(value, list):
            pending.extend(
                reversed(
                    [
                        ((*loc, i), item)
                        for i, item in enumerate(value)
                        if isinstance(item, _CONTAINERS) and item
                    ]
                )
            )
    shown = details[:STRICT_JSON_DETAILS_MAX]
    if not shown:  # out of budget before the first one: say what it is, if not where
        return [
            ErrorDetail(
                field="",
                message=(
                    f"{count} keys repeated in their objects or NaN/Infinity tokens (RFC 8259 allows "
                    f"neither), the first one met being {first[0]}; send each key once and numbers only"
                ),
            )
        ]
    if count > len(shown):
        last = shown[-1]
        shown[-1] = ErrorDetail(field=last.field, message=f"{last.message}; and {count - len(shown)} more")
    return shown


def _not_strict_json(details: list[ErrorDetail], name: str) -> Rejection:
    message = "the body is not strict JSON: " + "; ".join(d.message for d in details)
    return Rejection(replies.MALFORMED_JSON, message, details, command=name)


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
        return Rejection(replies.MALFORMED_JSON, f"the body is not UTF-8 JSON: {first['msg']}", command=name)
    if not first["loc"] and first["type"] in ("model_type", "dict_type"):
        return Rejection(replies.NOT_AN_OBJECT, "the body must be a JSON object", command=name)
    details = validation_details(exc)
    return Rejection(replies.VALIDATION_FAILED, summarise(details), details, command=name)
