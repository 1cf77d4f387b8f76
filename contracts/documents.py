"""The wire contract as documents, generated from the models so that they cannot drift from what
the worker enforces: a JSON Schema per body, and an AsyncAPI 3.0.0 description of the interface.

The schemas state shapes, types, lengths and declared bounds. Rules the models check in code —
the millisecond minimums of ``dial_timeout`` and ``try_interval``, ``source.target`` per
``source.type``, no NUL characters — are enforced by the models alone.
"""

from typing import Any, Final, Literal

from pydantic import BaseModel

from . import names
from .commands import COMMANDS
from .events import OutplanCreated, OutplanDeleted, OutplanUpdated
from .message_headers import command_headers, dead_letter_headers, event_headers, reply_headers
from .outplan import Outplan, OutplanPage
from .replies import Reply

Schema = dict[str, Any]

ASYNCAPI_VERSION: Final = "3.0.0"
# The interface's own version, independent of the package's: bump it when a body or name changes.
INTERFACE_VERSION: Final = "1.0.0"
AMQP_BINDING_VERSION: Final = "0.3.0"
JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"

REPLY: Final = "reply"
OUTPLAN: Final = "outplan"
OUTPLAN_PAGE: Final = "outplan_page"
DEAD_LETTER: Final = "dead_letter"
EVENTS: Final[dict[str, type[BaseModel]]] = {
    names.OUTPLAN_CREATED: OutplanCreated,
    names.OUTPLAN_UPDATED: OutplanUpdated,
    names.OUTPLAN_DELETED: OutplanDeleted,
}

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

TOPOLOGY_NAMES: Final = (
    "command_exchange", "command_queue", "dead_letter_exchange", "dead_letter_queue", "event_exchange"
)

_CORRELATION_ID: Final = {"$ref": "#/components/correlationIds/correlation_id"}


def _bodies() -> dict[str, tuple[type[BaseModel], Literal["validation", "serialization"]]]:
    # Requests as the worker accepts them; everything the worker writes as it writes it.
    return {
        **{name: (model, "validation") for name, model in COMMANDS.items()},
        REPLY: (Reply, "serialization"),
        OUTPLAN: (Outplan, "serialization"),
        OUTPLAN_PAGE: (OutplanPage, "serialization"),
        **{event_type: (model, "serialization") for event_type, model in EVENTS.items()},
    }


def json_schemas() -> dict[str, Schema]:
    """A self-contained JSON Schema (2020-12) per body, keyed by command name, ``reply``,
    ``outplan``, ``outplan_page`` or event type."""
    return {
        name: {"$schema": JSON_SCHEMA_DIALECT, **model.model_json_schema(mode=mode)}
        for name, (model, mode) in _bodies().items()
    }


def asyncapi(
    *,
    command_exchange: str = names.COMMAND_EXCHANGE,
    command_queue: str = names.COMMAND_QUEUE,
    dead_letter_exchange: str = names.DEAD_LETTER_EXCHANGE,
    dead_letter_queue: str = names.DEAD_LETTER_QUEUE,
    event_exchange: str = names.EVENT_EXCHANGE,
) -> Schema:
    """The AsyncAPI 3.0.0 document of the whole interface. The keywords are the worker settings of
    the same names: ``asyncapi(**settings.model_dump(include=set(TOPOLOGY_NAMES)))`` describes a
    deployment that renamed its exchanges and queues."""
    schemas, titles = _component_schemas(json_schemas())
    channels: Schema = {}
    operations: Schema = {}
    messages: Schema = {}
    for name, model in COMMANDS.items():
        channels[name] = _channel(
            name, name, command_exchange, "direct",
            f"Commands named {name}: the exchange routes them to the quorum queue {command_queue!r}. "
            f"Publishing straight to that queue works too, with the AMQP type {name!r}.",
        )
        messages[name] = _message(
            name, titles[name], COMMAND_SUMMARIES[name], names.REQUEST_CONTENT_TYPE,
            command_headers(name, mutation=model.mutates), message_type=name,
        )
        operations[name] = {
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
    channels[REPLY] = {
        "address": None,
        "description": "Replies, published through the default exchange with the request's reply_to "
        "as routing key; the address is known only at run time.",
        "messages": {REPLY: _ref("components", "messages", REPLY)},
        "bindings": _amqp(**{"is": "routingKey", "exchange": {"name": "", "type": "default", "vhost": "/"}}),
    }
    messages[REPLY] = _message(
        REPLY, titles[REPLY],
        f"status_code plus data or error. data is an {titles[OUTPLAN]} for every command but "
        f"{names.LIST}, whose data is an {titles[OUTPLAN_PAGE]}.",
        names.REQUEST_CONTENT_TYPE, reply_headers(),
    )
    for event_type in EVENTS:
        channels[event_type] = _channel(
            event_type, event_type, event_exchange, "topic",
            f"{event_type} events, routing key = type. Bind a queue for it before relying on them: "
            "unroutable events are held back and retried, not dropped.",
        )
        messages[event_type] = _message(
            event_type, titles[event_type], EVENT_SUMMARIES[event_type], names.EVENT_CONTENT_TYPE,
            event_headers(event_type), message_type=event_type,
        )
        operations[event_type] = {
            "action": "send",
            "channel": _ref("channels", event_type),
            "summary": f"{EVENT_SUMMARIES[event_type]} Published at least once, with publisher confirms, "
            "in version order per outplan.",
            "messages": [_ref("channels", event_type, "messages", event_type)],
            "bindings": _amqp(deliveryMode=2, mandatory=True),
        }
    channels[DEAD_LETTER] = _channel(
        None, DEAD_LETTER, dead_letter_exchange, "fanout",
        f"Invalid input and commands that kept failing, copied with their reasons; they land in "
        f"the queue {dead_letter_queue!r}.",
    )
    messages[DEAD_LETTER] = {
        "name": DEAD_LETTER,
        "title": "Dead-lettered command",
        "summary": "The original message, byte for byte, with x-error-* headers saying why.",
        "headers": dead_letter_headers(),
        "payload": {"description": "The original body; it may not be JSON at all."},
        "correlationId": _CORRELATION_ID,
        "bindings": _amqp(),
    }
    operations[DEAD_LETTER] = {
        "action": "send",
        "channel": _ref("channels", DEAD_LETTER),
        "summary": "Set a command aside: answered 400 or 500 first when it has a reply_to, then acked.",
        "messages": [_ref("channels", DEAD_LETTER, "messages", DEAD_LETTER)],
        "bindings": _amqp(deliveryMode=2, mandatory=False),
    }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "outplan-worker",
            "version": INTERFACE_VERSION,
            "description": "Owns outplans, the dial plans outbound campaigns use. Commands and queries "
            "arrive over RabbitMQ and are answered on their reply_to; every committed change is "
            "announced as a CloudEvents 1.0 event (structured JSON) through a transactional outbox.",
        },
        "defaultContentType": names.REQUEST_CONTENT_TYPE,
        "servers": {
            "local": {
                "host": "localhost:5672",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "RabbitMQ, vhost /.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "correlationIds": {
                "correlation_id": {
                    "description": "AMQP correlation_id: a reply carries its request's (or, when that "
                    "is empty, its message_id); an event carries its command's message_id.",
                    "location": "$message.header#/correlation_id",
                }
            },
        },
    }


def _channel(address: str | None, message: str, exchange: str, kind: str, description: str) -> Schema:
    return {
        "address": address,
        "description": description,
        "messages": {message: _ref("components", "messages", message)},
        "bindings": _amqp(**{
            "is": "routingKey",
            "exchange": {"name": exchange, "type": kind, "durable": True, "autoDelete": False, "vhost": "/"},
        }),
    }


def _message(
    name: str, title: str, summary: str, content_type: str, headers: Schema, message_type: str | None = None
) -> Schema:
    binding = {} if message_type is None else {"messageType": message_type}
    return {
        "name": name,
        "title": title,
        "summary": summary,
        "contentType": content_type,
        "correlationId": _CORRELATION_ID,
        "headers": headers,
        "payload": _ref("components", "schemas", title),
        "bindings": _amqp(**binding),
    }


def _amqp(**binding: Any) -> Schema:
    return {"amqp": {**binding, "bindingVersion": AMQP_BINDING_VERSION}}


def _ref(*path: str) -> Schema:
    return {"$ref": "#/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in path)}


def _component_schemas(schemas: dict[str, Schema]) -> tuple[dict[str, Schema], dict[str, str]]:
    """Every body and its ``$defs`` as one components/schemas map, with the ``$ref``s rewritten to
    point there; returns the map and each body's component name (its model's title)."""
    components: dict[str, Schema] = {}
    titles: dict[str, str] = {}
    for body, schema in schemas.items():
        schema = {key: value for key, value in schema.items() if key != "$schema"}
        definitions = schema.pop("$defs", {})
        titles[body] = schema["title"]
        for name, definition in [*definitions.items(), (schema["title"], schema)]:
            definition = _rewrite_refs(definition)
            # Two models of one name (or one model differing between modes) would collide here.
            if components.setdefault(name, definition) != definition:
                raise ValueError(f"two different schemas are both named {name!r}")
    return components, titles


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: value.replace("#/$defs/", "#/components/schemas/", 1) if key == "$ref" else _rewrite_refs(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(item) for item in node]
    return node
