"""Commands (imperative) and queries the worker accepts, one model per name."""

from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from . import names
from .fields import (
    DIAL_TIMEOUT_DEFAULT,
    PAGE_SIZE_MAX,
    TRY_INTERVAL_DEFAULT,
    Detail,
    DialTimeout,
    Name,
    Source,
    Text,
    TryCount,
    TryInterval,
)


class Command(BaseModel):
    """Base of every request body: strict JSON types, unknown fields rejected."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    command: ClassVar[str]
    mutates: ClassVar[bool] = False

    customer_id: UUID


class CreateOutplan(Command):
    command = names.CREATE
    mutates = True

    source: Source
    name: Name = ""
    detail: Detail = ""
    dial_timeout: DialTimeout = DIAL_TIMEOUT_DEFAULT
    try_interval: TryInterval = TRY_INTERVAL_DEFAULT
    max_try_count_0: TryCount = 0
    max_try_count_1: TryCount = 0
    max_try_count_2: TryCount = 0
    max_try_count_3: TryCount = 0
    max_try_count_4: TryCount = 0


class UpdateBasicInfo(Command):
    command = names.UPDATE_BASIC_INFO
    mutates = True

    id: UUID
    name: Name
    detail: Detail


class UpdateDialInfo(Command):
    command = names.UPDATE_DIAL_INFO
    mutates = True

    id: UUID
    source: Source
    dial_timeout: DialTimeout
    try_interval: TryInterval
    max_try_count_0: TryCount
    max_try_count_1: TryCount
    max_try_count_2: TryCount
    max_try_count_3: TryCount
    max_try_count_4: TryCount


class DeleteOutplan(Command):
    command = names.DELETE
    mutates = True

    id: UUID


class GetOutplan(Command):
    command = names.GET

    id: UUID
    include_deleted: bool = False


class ListOutplans(Command):
    command = names.LIST

    page_size: Annotated[int, Field(ge=1, le=PAGE_SIZE_MAX)] = PAGE_SIZE_MAX
    page_token: Text = ""


COMMANDS: dict[str, type[Command]] = {
    model.command: model
    for model in (CreateOutplan, UpdateBasicInfo, UpdateDialInfo, DeleteOutplan, GetOutplan, ListOutplans)
}
