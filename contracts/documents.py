"""The wire contract as documents, generated from the models so that they cannot drift from what
the worker enforces: a JSON Schema per body, and an AsyncAPI 3.0.0 description of the interface.

The schemas state shapes, types, lengths and declared bounds. Rules the models check in code —
the millisecond minimums of ``dial_timeout`` and ``try_interval``, ``source.target`` per
``source.type``, no NUL characters — are enforced by the models alone.
"""

from typing import Any, Final, Literal

from pydantic import BaseModel

from . import names
from .asyncapi_parts import DEAD_LETTER, REPLY, Parts, command, dead_letter, event, reply
from .commands import COMMANDS
from .events import OutplanCreated, OutplanDeleted, OutplanUpdated
from .outplan import Outplan, OutplanPage
from .replies import Reply

Schema = dict[str, Any]

ASYNCAPI_VERSION: Final = "3.0.0"
# The interface's own version, independent of the package's: bump it when a body or name changes.
INTERFACE_VERSION: Final = "1.2.0"
JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"

OUTPLAN: Final = "outplan"
OUTPLAN_PAGE: Final = "outplan_page"
EVENTS: Final[dict[str, type[BaseModel]]] = {
    names.OUTPLAN_CREATED: OutplanCreated,
    names.OUTPLAN_UPDATED: OutplanUpdated,
    names.OUTPLAN_DELETED: OutplanDeleted,
}
# The keywords of ``asyncapi``, named as the worker's settings name them.
TOPOLOGY_NAMES: Final = (
    "command_exchange",
    "command_queue",
    "dead_letter_exchange",
    "dead_letter_queue",
    "event_exchange",
)


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
    """The AsyncAPI 3.0.0 document of the whole interface. For a deployment that renamed its
    exchanges and queues: ``asyncapi(**settings.model_dump(include=set(TOPOLOGY_NAMES)))``."""
    schemas, titles = _component_schemas(json_schemas())
    parts: dict[str, Parts] = {
        **{
            name: command(name, model, titles[name], command_exchange, command_queue)
            for name, model in COMMANDS.items()
        },
        REPLY: reply(titles[REPLY], titles[OUTPLAN], titles[OUTPLAN_PAGE]),
        **{event_type: event(event_type, titles[event_type], event_exchange) for event_type in EVENTS},
        DEAD_LETTER: dead_letter(dead_letter_exchange, dead_letter_queue),
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
            },
        },
        "channels": {key: channel for key, (channel, _, _) in parts.items()},
        "operations": {key: operation for key, (_, _, operation) in parts.items() if operation is not None},
        "components": {
            "schemas": schemas,
            "messages": {key: message for key, (_, message, _) in parts.items()},
            "correlationIds": {
                "correlation_id": {
                    "description": "AMQP correlation_id: a reply carries its request's (or, when that "
                    "is empty, its message_id); an event carries its command's message_id.",
                    "location": "$message.header#/correlation_id",
                },
            },
        },
    }


def _component_schemas(schemas: dict[str, Schema]) -> tuple[dict[str, Schema], dict[str, str]]:
    """Every body and its ``$defs`` in one components/schemas map, ``$ref``s rewritten to point
    there; returns the map and each body's component name (its model's title)."""
    components: dict[str, Schema] = {}
    titles: dict[str, str] = {}
    for body, schema in schemas.items():
        schema = {key: value for key, value in schema.items() if key != "$schema"}
        definitions = schema.pop("$defs", {})
        titles[body] = schema["title"]
        for name, definition in [*definitions.items(), (schema["title"], schema)]:
            definition = _rewrite_refs(definition)
            # Two models of one name, or one model that differs between modes, would collide here.
            if components.setdefault(name, definition) != definition:
                raise ValueError(f"two different schemas are both named {name!r}")
    return components, titles


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: value.replace("#/$defs/", "#/components/schemas/", 1)
            if key == "$ref"
            else _rewrite_refs(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(item) for item in node]
    return node
