"""Events (past tense) as CloudEvents 1.0 structured JSON, and ``parse_event`` for subscribers."""

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from .outplan import Outplan


class OutplanEvent(BaseModel):
    """The envelope shared by every outplan event."""

    # Unknown extension attributes are ignored so that subscribers survive additions.
    model_config = ConfigDict(extra="ignore", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: UUID
    source: str
    type: str
    subject: UUID
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    customerid: UUID
    outplanversion: Annotated[int, Field(ge=1)]
    eventsequence: Annotated[int, Field(ge=1)]
    data: Outplan


class OutplanCreated(OutplanEvent):
    type: Literal["outplan_created"] = "outplan_created"


class OutplanUpdated(OutplanEvent):
    type: Literal["outplan_updated"] = "outplan_updated"


class OutplanDeleted(OutplanEvent):
    type: Literal["outplan_deleted"] = "outplan_deleted"


AnyOutplanEvent = Annotated[OutplanCreated | OutplanUpdated | OutplanDeleted, Field(discriminator="type")]
_EVENT = TypeAdapter[OutplanCreated | OutplanUpdated | OutplanDeleted](AnyOutplanEvent)


def parse_event(body: bytes | str) -> OutplanCreated | OutplanUpdated | OutplanDeleted:
    """Validate a CloudEvents body; raises ``pydantic.ValidationError`` naming what is wrong."""
    return _EVENT.validate_json(body)
