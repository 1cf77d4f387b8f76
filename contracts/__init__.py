"""Wire contracts of outplan-worker: commands, replies and events (depends on pydantic and
phonenumberslite only)."""

from . import names
from .commands import (
    COMMANDS,
    Command,
    CreateOutplan,
    DeleteOutplan,
    GetOutplan,
    ListOutplans,
    UpdateBasicInfo,
    UpdateDialInfo,
)
from .errors import summarise, validation_details
from .events import OutplanCreated, OutplanDeleted, OutplanEvent, OutplanUpdated, parse_event
from .fields import Source, StoredSource
from .outplan import Outplan, OutplanPage
from .projection import Applied, Gap, Projection
from .replies import ErrorDetail, ErrorInfo, Reply

__all__ = [
    "COMMANDS",
    "Applied",
    "Gap",
    "Projection",
    "Command",
    "CreateOutplan",
    "DeleteOutplan",
    "ErrorDetail",
    "ErrorInfo",
    "GetOutplan",
    "ListOutplans",
    "Outplan",
    "OutplanCreated",
    "OutplanDeleted",
    "OutplanEvent",
    "OutplanPage",
    "OutplanUpdated",
    "Reply",
    "Source",
    "StoredSource",
    "UpdateBasicInfo",
    "UpdateDialInfo",
    "names",
    "parse_event",
    "summarise",
    "validation_details",
]
