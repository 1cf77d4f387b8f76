"""The channel, the message and the operation of each kind of message in the AsyncAPI document."""

from typing import Any, Final

from . import names
from .commands import Command
from .message_headers import command_headers, dead_letter_headers, event_headers, reply_headers

Schema = dict[str, Any]
# The channel, the message and the operation (None: described elsewhere) of one kind of message.
Parts = tuple[Schema, Schema, Schema | None]

AMQP_BINDING_VERSION: Final = "0.3.0"
REPLY: Final = "reply"
DEAD_LETTER: Final = "dead_letter"

COMMAND_SUMMARIES: Final = {
    names.CREATE: "Create an outplan; the reply (201) carries it.",
    names.UPDATE_BASIC_INFO: "Replace an outplan's name and detail; the reply carries the outplan.",
    names.UPDATE_DIAL_INFO: "Replace an outplan's source, timing and try counts, all of them; "
    "the reply carries the outplan.",
    names.DELETE: "Delete an outplan (soft); the reply carries it as deleted.",
    names.GET: "Read one outplan; the reply carries it.",
    names.LIST: "Page through a customer's outplans, newest first; the reply carries an OutplanPage.",
}
EVENT_SUMMARIES: Final = {
    names.OUTPLAN_CREATED: "An outplan was created.",
    names.OUTPLAN_UPDATED: "An outplan's basic or dial info was replaced.",
    names.OUTPLAN_DELETED: "An outplan was deleted; data is its final state.",
}


def command(name: str, model: type[Command], title: str, exchange: str, queue: str) -> Parts:
    """Command ``name``: a channel on the direct ``exchange`` (address = routing key = ``name``)
    routed to ``queue``, its message (payload: the component schema ``title``; headers by
    ``command_headers``, ``message_id`` required when ``model.mutates``) and a receive operation
    whose reply goes to the request's ``reply_to``."""
    channel = _channel(
        name,
        name,
        exchange,
        "direct",
        f"The exchange routes {name} to the quorum queue {queue}; publishing straight to that "
        f"queue works too, with the AMQP type {name}.",
    )
    message = _message(
        name,
        title,
        COMMAND_SUMMARIES[name],
        names.REQUEST_CONTENT_TYPE,
        command_headers(name, mutation=model.mutates),
        message_type=name,
    )
    operation = {
        "action": "receive",
        "channel": _ref("channels", name),
        "summary": COMMAND_SUMMARIES[name],
        "messages": [_ref("channels", name, "messages", name)],
        "reply": {
            "address": {
                "location": "$message.header#/reply_to",
                "description": "The request's reply_to: a queue, or amq.rabbitmq.reply-to.",
            },
            "channel": _ref("channels", REPLY),
            "messages": [_ref("channels", REPLY, "messages", REPLY)],
        },
        "bindings": _amqp(ack=True),
    }
    return channel, message, operation


def reply(title: str, outplan_title: str, page_title: str) -> Parts:
    """The reply channel (the default exchange; the address is the request's ``reply_to``) and its
    message; no operation. The titles are the component schema names of ``Reply``, ``Outplan``
    and ``OutplanPage``."""
    # Sent as each command operation's reply, so it needs no operation of its own.
    channel = {
        "address": None,
        "description": "Replies go through the default exchange with the request's reply_to as "
        "routing key, so the address is known only at run time.",
        "messages": {REPLY: _ref("components", "messages", REPLY)},
        "bindings": _amqp(**{"is": "routingKey", "exchange": {"name": "", "type": "default", "vhost": "/"}}),
    }
    summary = (
        f"status_code plus data or error. data is an {outplan_title} for every command but "
        f"{names.LIST}, whose data is an {page_title}."
    )
    return channel, _message(REPLY, title, summary, names.REQUEST_CONTENT_TYPE, reply_headers()), None


def event(event_type: str, title: str, exchange: str) -> Parts:
    """Event ``event_type``: a channel on the topic ``exchange`` (address = routing key = type), its
    message (payload: the component schema ``title``) and a send operation, persistent and
    ``mandatory``."""
    channel = _channel(
        event_type,
        event_type,
        exchange,
        "topic",
        f"{event_type} events; the routing key is the type. Bind a queue before relying on them: "
        "an event no binding matches is counted and dropped, never retried; it stays in the event "
        "log, and outplan-worker replay --queue delivers it to a queue bound later. An event a queue "
        "refuses (basic.nack) is published again up to 5 times, then given up and left to replay.",
    )
    message = _message(
        event_type,
        title,
        EVENT_SUMMARIES[event_type],
        names.EVENT_CONTENT_TYPE,
        event_headers(event_type),
        message_type=event_type,
    )
    operation = {
        "action": "send",
        "channel": _ref("channels", event_type),
        "summary": f"{EVENT_SUMMARIES[event_type]} Published at least once, with publisher confirms, "
        "in version order per outplan.",
        "messages": [_ref("channels", event_type, "messages", event_type)],
        "bindings": _amqp(deliveryMode=2, mandatory=True),
    }
    return channel, message, operation


def dead_letter(exchange: str, queue: str) -> Parts:
    """The dead-letter channel (the fanout ``exchange``, bound to ``queue``), its message (the
    original body and properties plus ``x-error-*`` headers) and a send operation."""
    channel = _channel(
        None,
        DEAD_LETTER,
        exchange,
        "fanout",
        f"Invalid input and commands that kept failing, set aside with their reasons in the queue {queue}. "
        "RabbitMQ also routes here what exceeds the command queue's x-delivery-limit.",
    )
    message = {
        "name": DEAD_LETTER,
        "title": "Dead-lettered command",
        "summary": "The original body and properties, plus x-error-* headers saying why.",
        "correlationId": _ref("components", "correlationIds", "correlation_id"),
        "headers": dead_letter_headers(),
        "payload": {"description": "The original body; it may not be JSON at all."},
        "bindings": _amqp(),
    }
    operation = {
        "action": "send",
        "channel": _ref("channels", DEAD_LETTER),
        "summary": "Set a command aside after answering it 400 or 500 (when it has a reply_to); then ack it.",
        "messages": [_ref("channels", DEAD_LETTER, "messages", DEAD_LETTER)],
        "bindings": _amqp(deliveryMode=2, mandatory=False),
    }
    return channel, message, operation


def _channel(address: str | None, message: str, exchange: str, kind: str, description: str) -> Schema:
    return {
        "address": address,
        "description": description,
        "messages": {message: _ref("components", "messages", message)},
        "bindings": _amqp(
            **{
                "is": "routingKey",
                "exchange": {
                    "name": exchange,
                    "type": kind,
                    "durable": True,
                    "autoDelete": False,
                    "vhost": "/",
                },
            }
        ),
    }


def _message(
    name: str, title: str, summary: str, content_type: str, headers: Schema, message_type: str | None = None
) -> Schema:
    return {
        "name": name,
        "title": title,
        "summary": summary,
        "contentType": content_type,
        "correlationId": _ref("components", "correlationIds", "correlation_id"),
        "headers": headers,
        "payload": _ref("components", "schemas", title),
        "bindings": _amqp(**({} if message_type is None else {"messageType": message_type})),
    }


def _amqp(**binding: Any) -> Schema:
    return {"amqp": {**binding, "bindingVersion": AMQP_BINDING_VERSION}}


def _ref(*path: str) -> Schema:
    return {"$ref": "#/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in path)}
