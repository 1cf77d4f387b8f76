"""One handler per command, registered in two literal dicts, gathered in ``REGISTRY``.

Changes are pure functions ``(command, current, context) -> Change``: they see the outplan as it
stands (``None`` when it does not exist for this customer or was deleted) and say what it becomes.
The unit of work persists a whole batch of changes at once. Queries read through the unit of work.
Expected refusals raise ``DomainError``.
"""

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from contracts import (
    Command,
    CreateOutplan,
    DeleteOutplan,
    GetOutplan,
    ListOutplans,
    Outplan,
    OutplanPage,
    Reply,
    UpdateBasicInfo,
    UpdateDialInfo,
    names,
)
from contracts.fields import StoredSource
from contracts.timefmt import NOT_DELETED

from . import paging
from .domain import OutplanNotFound, PagePosition, Versioned


class OutplanReader(Protocol):
    """What the queries read: ``persistence.outplans.OutplanRepository`` is the one in use."""

    async def get(self, customer_id: UUID, outplan_id: UUID, *, include_deleted: bool) -> Versioned | None:
        """The outplan if it is ``customer_id``'s and live (or deleted, with ``include_deleted``)."""
        ...

    async def list_live(
        self, customer_id: UUID, after: PagePosition | None, limit: int
    ) -> list[tuple[Versioned, datetime]]:
        """At most ``limit`` live outplans, newest first, strictly after ``after``; each with its
        raw ``tm_create``."""
        ...


class Reads(Protocol):
    """What a query handler is given: a unit of work's ``outplans``, read only."""

    @property
    def outplans(self) -> OutplanReader:
        """The outplans, read through this unit of work's connection."""
        ...


@dataclass(frozen=True, slots=True)
class Context:
    """What a change may depend on besides the command: the batch's time, ``now``.

    ``now`` is PostgreSQL's ``now()`` when the batch was read, as ``YYYY-MM-DD HH:MM:SS.ffffff``
    (UTC); every change of the batch carries it as ``tm_update`` (and ``tm_create``/``tm_delete``).
    """

    now: str  # "YYYY-MM-DD HH:MM:SS.ffffff", UTC

    def new_id(self) -> uuid.UUID:
        """A new outplan id: a random (version 4) UUID."""
        return uuid.uuid4()


@dataclass(frozen=True, slots=True)
class Change:
    """What a change handler decided: the outplan as it becomes (``stored``, version already
    advanced), the type of the event that announces it, and the reply's status code (201 for a
    create, else 200)."""

    event_type: str
    stored: Versioned
    status_code: int = 200


def _dial(cmd: CreateOutplan | UpdateDialInfo) -> dict[str, Any]:
    return {
        # As stored: ``model_copy(update=...)`` does not validate, so the command's ``Source``
        # would stay in the outplan, which then differs from the same outplan read back.
        "source": StoredSource.model_validate(cmd.source),
        "dial_timeout": cmd.dial_timeout,
        "try_interval": cmd.try_interval,
        **{f"max_try_count_{i}": getattr(cmd, f"max_try_count_{i}") for i in range(5)},
    }


def _existing(cmd: UpdateBasicInfo | UpdateDialInfo | DeleteOutplan, current: Versioned | None) -> Versioned:
    if current is None:
        raise OutplanNotFound(cmd.id)
    return current


def create_outplan(cmd: CreateOutplan, current: Versioned | None, ctx: Context) -> Change:
    """A new outplan at version 1: a new id, the command's fields, ``tm_create`` = ``tm_update`` =
    ``ctx.now``, not deleted; 201 and ``outplan_created``. ``current`` is unused (always None)."""
    outplan = Outplan(
        id=ctx.new_id(),
        customer_id=cmd.customer_id,
        name=cmd.name,
        detail=cmd.detail,
        **_dial(cmd),
        tm_create=ctx.now,
        tm_update=ctx.now,
        tm_delete=NOT_DELETED,
    )
    return Change(names.OUTPLAN_CREATED, Versioned(outplan, 1), 201)


def update_basic_info(cmd: UpdateBasicInfo, current: Versioned | None, ctx: Context) -> Change:
    """``name`` and ``detail`` replaced, ``tm_update`` = ``ctx.now``, version + 1;
    ``outplan_updated``. Raises ``OutplanNotFound`` when ``current`` is None."""
    found = _existing(cmd, current)
    outplan = found.outplan.model_copy(update={"name": cmd.name, "detail": cmd.detail, "tm_update": ctx.now})
    return Change(names.OUTPLAN_UPDATED, Versioned(outplan, found.version + 1))


def update_dial_info(cmd: UpdateDialInfo, current: Versioned | None, ctx: Context) -> Change:
    """``source``, ``dial_timeout``, ``try_interval`` and ``max_try_count_0..4`` all replaced,
    ``tm_update`` = ``ctx.now``, version + 1; ``outplan_updated``. Raises ``OutplanNotFound`` when
    ``current`` is None."""
    found = _existing(cmd, current)
    outplan = found.outplan.model_copy(update={**_dial(cmd), "tm_update": ctx.now})
    return Change(names.OUTPLAN_UPDATED, Versioned(outplan, found.version + 1))


def delete_outplan(cmd: DeleteOutplan, current: Versioned | None, ctx: Context) -> Change:
    """Soft delete: ``tm_update`` = ``tm_delete`` = ``ctx.now``, version + 1, the row kept;
    ``outplan_deleted``. Raises ``OutplanNotFound`` when ``current`` is None."""
    found = _existing(cmd, current)
    outplan = found.outplan.model_copy(update={"tm_update": ctx.now, "tm_delete": ctx.now})
    return Change(names.OUTPLAN_DELETED, Versioned(outplan, found.version + 1))


async def get_outplan(cmd: GetOutplan, uow: Reads) -> Reply:
    """200 with the customer's outplan ``cmd.id``; raises ``OutplanNotFound`` when the customer has
    none (a deleted one counts only with ``include_deleted``)."""
    stored = await uow.outplans.get(cmd.customer_id, cmd.id, include_deleted=cmd.include_deleted)
    if stored is None:
        raise OutplanNotFound(cmd.id)
    return Reply(status_code=200, data=stored.outplan.model_dump(mode="json"))


async def list_outplans(cmd: ListOutplans, uow: Reads) -> Reply:
    """200 with an ``OutplanPage``: at most ``page_size`` live outplans of the customer, newest first
    (``tm_create``, then ``id``, descending), after the position ``page_token`` names.

    One row more than the page is read to learn whether another page follows; if so,
    ``next_page_token`` names the page's last outplan, else it is ``""``. ``page_token`` was
    checked when the request was decoded; an invalid one here raises ``paging.InvalidPageToken``.
    """
    after = paging.decode(cmd.page_token)
    rows = await uow.outplans.list_live(cmd.customer_id, after, cmd.page_size + 1)
    page = rows[: cmd.page_size]
    token = paging.encode(page[-1][1], page[-1][0].outplan.id) if len(rows) > cmd.page_size else ""
    result = OutplanPage(result=[stored.outplan for stored, _ in page], next_page_token=token)
    return Reply(status_code=200, data=result.model_dump(mode="json"))


ChangeHandler = Callable[[Any, Versioned | None, Context], Change]
QueryHandler = Callable[[Any, Reads], Awaitable[Reply]]

CHANGES: dict[type[Command], ChangeHandler] = {
    CreateOutplan: create_outplan,
    UpdateBasicInfo: update_basic_info,
    UpdateDialInfo: update_dial_info,
    DeleteOutplan: delete_outplan,
}
QUERIES: dict[type[Command], QueryHandler] = {
    GetOutplan: get_outplan,
    ListOutplans: list_outplans,
}


@dataclass(frozen=True, slots=True)
class Registry:
    """Which handler serves each command type, looked up by the command's exact type.

    ``changes`` maps each mutating command to a ``ChangeHandler``, ``queries`` each read to a
    ``QueryHandler``; a command type missing from its map is a ``KeyError`` when it is dispatched.
    ``Service`` takes one (``REGISTRY`` by default); another is built with ``dataclasses.replace``,
    e.g. ``replace(REGISTRY, changes={**REGISTRY.changes, CreateOutplan: my_create})``.
    """

    changes: Mapping[type[Command], ChangeHandler]
    queries: Mapping[type[Command], QueryHandler]


REGISTRY = Registry(changes=CHANGES, queries=QUERIES)  # the handlers above: what the worker runs
