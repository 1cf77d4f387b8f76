"""One handler per command: plain functions ``(command, uow, request) -> Reply``.

Handlers write only through the unit of work and never commit it: the caller does, so
several commands can share one transaction. Expected refusals raise ``DomainError``.
"""

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from contracts import (
    Command,
    CreateOutplan,
    DeleteOutplan,
    GetOutplan,
    ListOutplans,
    OutplanPage,
    Reply,
    UpdateBasicInfo,
    UpdateDialInfo,
    names,
)

from . import paging
from .domain import OutplanNotFound, Versioned
from .persistence.uow import UnitOfWork
from .requests import Request


def _ok(stored: Versioned, status_code: int = 200) -> Reply:
    return Reply(status_code=status_code, data=stored.outplan.model_dump(mode="json"))


async def create_outplan(cmd: CreateOutplan, uow: UnitOfWork, request: Request) -> Reply:
    stored = await uow.outplans.add(uuid.uuid4(), cmd)
    await uow.events.record(names.OUTPLAN_CREATED, stored, request.message_id)
    return _ok(stored, 201)


async def update_basic_info(cmd: UpdateBasicInfo, uow: UnitOfWork, request: Request) -> Reply:
    stored = await uow.outplans.update_basic_info(cmd)
    if stored is None:
        raise OutplanNotFound(cmd.id)
    await uow.events.record(names.OUTPLAN_UPDATED, stored, request.message_id)
    return _ok(stored)


async def update_dial_info(cmd: UpdateDialInfo, uow: UnitOfWork, request: Request) -> Reply:
    stored = await uow.outplans.update_dial_info(cmd)
    if stored is None:
        raise OutplanNotFound(cmd.id)
    await uow.events.record(names.OUTPLAN_UPDATED, stored, request.message_id)
    return _ok(stored)


async def delete_outplan(cmd: DeleteOutplan, uow: UnitOfWork, request: Request) -> Reply:
    stored = await uow.outplans.delete(cmd.customer_id, cmd.id)
    if stored is None:
        raise OutplanNotFound(cmd.id)
    await uow.events.record(names.OUTPLAN_DELETED, stored, request.message_id)
    return _ok(stored)


async def get_outplan(cmd: GetOutplan, uow: UnitOfWork, request: Request) -> Reply:
    stored = await uow.outplans.get(cmd.customer_id, cmd.id, include_deleted=cmd.include_deleted)
    if stored is None:
        raise OutplanNotFound(cmd.id)
    return _ok(stored)


async def list_outplans(cmd: ListOutplans, uow: UnitOfWork, request: Request) -> Reply:
    after = paging.decode(cmd.page_token)
    rows = await uow.outplans.list_live(cmd.customer_id, after, cmd.page_size + 1)
    page = rows[: cmd.page_size]
    token = paging.encode(page[-1][1], page[-1][0].outplan.id) if len(rows) > cmd.page_size else ""
    result = OutplanPage(result=[stored.outplan for stored, _ in page], next_page_token=token)
    return Reply(status_code=200, data=result.model_dump(mode="json"))


Handler = Callable[[Any, UnitOfWork, Request], Awaitable[Reply]]

HANDLERS: dict[type[Command], Handler] = {
    CreateOutplan: create_outplan,
    UpdateBasicInfo: update_basic_info,
    UpdateDialInfo: update_dial_info,
    DeleteOutplan: delete_outplan,
    GetOutplan: get_outplan,
    ListOutplans: list_outplans,
}
