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
    """Base of every request body: strict JSON types, unknown fields rejected.

    ``command`` is the wire name (routing key on the command exchange, or the AMQP ``type``);
    ``mutates`` marks changes, which must carry a ``message_id`` and are recorded under it (idempotency).
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    command: ClassVar[str]
    mutates: ClassVar[bool] = False

    customer_id: UUID


class CreateOutplan(Command):
    """Create an outplan; the reply (201) carries it with its new ``id``.

    ``source`` is the caller ID the dialer presents. ``dial_timeout`` (how long one attempt rings)
    and ``try_interval`` (the least time between two tries of a campaign target) are in
    milliseconds. ``max_try_count_0`` … ``max_try_count_4`` are how often each of a target's five
    destinations is tried; 0 means that destination is never dialled.
    """

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
    """Replace an outplan's ``name`` and ``detail``, both required; the reply carries the outplan.

    404 ``OUTPLAN_NOT_FOUND`` when the customer has no live outplan with this ``id``.
    """

    command = names.UPDATE_BASIC_INFO
    mutates = True

    id: UUID
    name: Name
    detail: Detail


class UpdateDialInfo(Command):
    """Replace an outplan's dial settings, all of them: nothing is defaulted, so send the current
    value of what should stay. The reply carries the outplan.

    As in ``CreateOutplan``, ``dial_timeout`` and ``try_interval`` are in milliseconds and
    ``max_try_count_0`` … ``max_try_count_4`` count tries per destination (0: never dialled).
    404 ``OUTPLAN_NOT_FOUND`` when the customer has no live outplan with this ``id``.
    """

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
    """Delete an outplan, softly: it stays readable with ``include_deleted``, its ``tm_delete`` (and
    ``tm_update``) set to the time of deletion. The reply carries it as deleted.

    404 ``OUTPLAN_NOT_FOUND`` when the customer has no live outplan with this ``id``: a second
    delete under a new ``message_id`` gets it too.
    """

    command = names.DELETE
    mutates = True

    id: UUID


class GetOutplan(Command):
    """Read one of the customer's outplans; a deleted one only with ``include_deleted``.

    404 ``OUTPLAN_NOT_FOUND`` when there is none, also when the ``id`` is another customer's.
    """

    command = names.GET

    id: UUID
    include_deleted: bool = False


class ListOutplans(Command):
    """Page through the customer's live outplans, newest first; the reply's ``data`` is an
    ``OutplanPage``.

    ``page_token`` is ``""`` for the first page, then the previous page's ``next_page_token``; the
    text of a ``tm_create`` (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC) asks for the outplans created
    strictly before it. Any other token is refused 400 naming ``page_token``.
    """

    command = names.LIST

    page_size: Annotated[int, Field(ge=1, le=PAGE_SIZE_MAX)] = PAGE_SIZE_MAX
    page_token: Text = ""


COMMANDS: dict[str, type[Command]] = {
    model.command: model
    for model in (CreateOutplan, UpdateBasicInfo, UpdateDialInfo, DeleteOutplan, GetOutplan, ListOutplans)
}
