"""Names on the wire: commands, events and the default AMQP topology."""

from typing import Final, Literal

CREATE: Final = "outplan.create"
GET: Final = "outplan.get"
LIST: Final = "outplan.list"
UPDATE_BASIC_INFO: Final = "outplan.update_basic_info"
UPDATE_DIAL_INFO: Final = "outplan.update_dial_info"
DELETE: Final = "outplan.delete"

COMMAND_NAMES: Final = (CREATE, GET, LIST, UPDATE_BASIC_INFO, UPDATE_DIAL_INFO, DELETE)
MUTATIONS: Final = frozenset({CREATE, UPDATE_BASIC_INFO, UPDATE_DIAL_INFO, DELETE})

EventType = Literal["outplan_created", "outplan_updated", "outplan_deleted"]
OUTPLAN_CREATED: Final = "outplan_created"
OUTPLAN_UPDATED: Final = "outplan_updated"
OUTPLAN_DELETED: Final = "outplan_deleted"
EVENT_TYPES: Final = (OUTPLAN_CREATED, OUTPLAN_UPDATED, OUTPLAN_DELETED)

COMMAND_EXCHANGE: Final = "outplan.commands"
COMMAND_QUEUE: Final = "outplan-worker.commands"
DEAD_LETTER_EXCHANGE: Final = "outplan-worker.dlx"
DEAD_LETTER_QUEUE: Final = "outplan-worker.commands.dead"
EVENT_EXCHANGE: Final = "outplan.events"

REQUEST_CONTENT_TYPE: Final = "application/json"
EVENT_CONTENT_TYPE: Final = "application/cloudevents+json"
EVENT_SOURCE: Final = "outplan-worker"  # the CloudEvents `source` unless configured otherwise
