"""What each message carries besides its body, as schemas for the AsyncAPI document.

AsyncAPI gives a message one ``headers`` object, so the AMQP properties a message relies on
(``message_id``, ``correlation_id``, ``reply_to``, ``type``, ``content_type``, ``content_encoding``,
named as pika and aio-pika name them) are described there too, next to the application headers.
"""

from typing import Any

from . import names, replies

Schema = dict[str, Any]

_INVALID_INPUT_REASONS = (
    replies.VALIDATION_FAILED,
    replies.MALFORMED_JSON,
    replies.NOT_AN_OBJECT,
    replies.BODY_TOO_LARGE,
    replies.UNSUPPORTED_CONTENT_TYPE,
    replies.UNSUPPORTED_CONTENT_ENCODING,
    replies.UNKNOWN_COMMAND,
    replies.MESSAGE_ID_REQUIRED,
    replies.INVALID_PROPERTIES,
)


_TRACEPARENT_PATTERN = "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"


def _trace_context(traceparent: str, tracestate: str) -> dict[str, Schema]:
    """The W3C Trace Context headers (https://www.w3.org/TR/trace-context/), as AMQP application
    headers the way OpenTelemetry's propagators write them."""
    return {
        "traceparent": _text(traceparent, pattern=_TRACEPARENT_PATTERN),
        "tracestate": _text(tracestate),
    }


def command_headers(command: str, *, mutation: bool) -> Schema:
    """The properties a ``command`` may carry; with ``mutation``, ``message_id`` is required and
    described as the idempotency key."""
    message_id = (
        "The idempotency key (required): the same key from the same customer gets the original "
        "reply again when the command means the same (compared after validation, with defaults "
        "applied: key order, whitespace, UUID case and a default sent or left out do not matter); "
        "with another command or other values it is refused 409 IDEMPOTENCY_KEY_REUSED."
        if mutation
        else "Optional; stands in for correlation_id in the reply when that is empty."
    )
    return _object(
        {
            "message_id": _text(message_id),
            "correlation_id": _text("Copied to the reply."),
            "reply_to": _text(
                "Where the reply goes: a queue, or amq.rabbitmq.reply-to. Without it, nothing is answered."
            ),
            "type": _text(
                "The command name; needed only when publishing straight to the command queue.", const=command
            ),
            "content_type": _text(
                f"{names.REQUEST_CONTENT_TYPE}, UTF-8 (a charset parameter may say "
                "utf-8 or utf8, in any case, quoted or not); a missing content_type is "
                "taken as JSON, any other is refused UNSUPPORTED_CONTENT_TYPE."
            ),
            "content_encoding": _text(
                "Absent, empty or identity: the body is sent as it is. Any other "
                "(gzip, deflate, ...) is refused UNSUPPORTED_CONTENT_ENCODING."
            ),
            **_trace_context(
                "Optional W3C trace context: the command is processed inside this trace (a new "
                "one is started when it is absent or malformed; a malformed value is ignored, "
                "never refused).",
                "Optional; passed on with traceparent.",
            ),
        },
        required=("message_id",) if mutation else (),
    )


def reply_headers() -> Schema:
    """What a reply carries besides its body: ``status_code`` (required; an application header
    repeating the body's), ``correlation_id`` and ``content_type``."""
    return _object(
        {
            "correlation_id": _text("The request's correlation_id, or its message_id when that is empty."),
            "status_code": {"type": "integer", "description": "The same status_code as the body."},
            "content_type": _text("The body's media type.", const=names.REQUEST_CONTENT_TYPE),
            **_trace_context(
                "The trace context of the worker's processing of the command (a child of the "
                "command's traceparent); with no tracing SDK in the worker, the command's own, "
                "unchanged. Absent when the command had none and the worker records no trace.",
                "Passed on from the command.",
            ),
        },
        required=("status_code",),
    )


def event_headers(event_type: str) -> Schema:
    """What an event of ``event_type`` carries besides its body: ``message_id`` (the event id),
    ``type``, ``content_type`` (all required), ``correlation_id`` and the replay headers."""
    return _object(
        {
            "message_id": _text(
                "The event id, the same as the body's id on every (re-)publish.", format="uuid"
            ),
            "type": _text("The event type, the same as the body's type.", const=event_type),
            "correlation_id": _text(
                "The message_id of the command that made the change; absent on "
                "events replayed from an exported file."
            ),
            "content_type": _text("CloudEvents structured mode.", const=names.EVENT_CONTENT_TYPE),
            "x-replayed": {
                "type": "boolean",
                "const": True,
                "description": "Present only on events re-published by outplan-worker replay.",
            },
            "x-replay-run-id": _text("Identifies one replay run; present only on replayed events."),
            **_trace_context(
                "The trace context of this publish (a child of the causing command's context when "
                "the worker records traces, else that context itself); the body's CloudEvents "
                "traceparent always holds the command's, the same on every re-publish.",
                "Passed on from the causing command.",
            ),
        },
        required=("message_id", "type", "content_type"),
    )


def dead_letter_headers() -> Schema:
    """The ``x-error-*``, ``x-exception-*`` and ``x-original-*`` headers of a dead-letter copy,
    and the original properties it keeps; none required."""
    # No header is required: RabbitMQ itself dead-letters a message past the queue's
    # x-delivery-limit, and such copies carry its x-death header instead of the worker's.
    return _object(
        {
            "x-error-status": {"type": "string", "enum": [replies.INVALID_ARGUMENT, replies.INTERNAL]},
            "x-error-reason": {"type": "string", "enum": [*_INVALID_INPUT_REASONS, replies.INTERNAL_ERROR]},
            "x-error-message": _text("What was wrong, at most 1000 characters."),
            "x-original-exchange": _text("The exchange the command was published to."),
            "x-original-routing-key": _text("Its routing key."),
            "x-exception-class": _text("For INTERNAL_ERROR: the class of the handler's exception."),
            "x-exception-message": _text("For INTERNAL_ERROR: its message, at most 1000 characters."),
            "x-deliveries": {"type": "integer", "description": "For INTERNAL_ERROR: deliveries attempted."},
            "x-error-unreadable-properties": _text(
                "For INVALID_PROPERTIES: the properties and headers that "
                "could not be decoded (left out of this copy), comma-separated."
            ),
            "x-error-dropped-headers": _text(
                "Original headers left out of this copy because they could not be "
                "encoded again or did not fit in 64 KiB, comma-separated."
            ),
            "x-original-body-size": {
                "type": "integer",
                "description": "Present when the body was longer than "
                "64 KiB: its size in bytes; the copy keeps the first 64 KiB.",
            },
            "message_id": _text("The original message_id."),
            "correlation_id": _text("The original correlation_id."),
            "reply_to": _text("The original reply_to."),
            "type": _text("The original AMQP type."),
        }
    )


def _object(properties: dict[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def _text(description: str, **constraints: Any) -> Schema:
    return {"type": "string", **constraints, "description": description}
