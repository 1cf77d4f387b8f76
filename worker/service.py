"""Run one request through its handler inside a unit of work, with the idempotency record."""

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from uuid import UUID

from .domain import DomainError, IdempotencyKeyReused
from .handlers import HANDLERS
from .persistence.uow import UnitOfWork
from .requests import Request

UowFactory = Callable[[], AbstractAsyncContextManager[UnitOfWork]]


class InjectedFault(RuntimeError):
    """Raised by the test-only fault hook to stand for a bug in a handler."""


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int
    reply: bytes  # the JSON reply, byte for byte what was (or will be) sent
    outplan_id: UUID | None
    replayed: bool = False  # an earlier reply, given again for a repeated message_id


class Service:
    def __init__(self, uow_factory: UowFactory, *, fault_hook: bool = False) -> None:
        self._uow_factory = uow_factory
        self._fault_hook = fault_hook

    async def execute(self, request: Request) -> Outcome:
        cmd = request.command
        handler = HANDLERS[type(cmd)]
        outplan_id: UUID | None = getattr(cmd, "id", None)
        if self._fault_hook and getattr(cmd, "name", None) == "__raise__":
            raise InjectedFault("handler failure injected by the test fault hook")
        async with self._uow_factory() as uow:
            if not cmd.mutates:
                try:
                    reply = await handler(cmd, uow, request)
                except DomainError as exc:
                    reply = exc.reply()
                return Outcome(reply.status_code, reply.to_json(), outplan_id)

            assert request.message_id is not None  # enforced when the request was decoded
            stored = await uow.inbox.claim(cmd.customer_id, request.message_id, cmd.command, request.body_hash)
            if stored is not None:
                if stored.command != cmd.command or stored.body_hash != request.body_hash:
                    reply = IdempotencyKeyReused(request.message_id).reply()
                    return Outcome(reply.status_code, reply.to_json(), outplan_id)
                # Both are written in the transaction that made the record.
                assert stored.reply is not None and stored.status_code is not None
                return Outcome(stored.status_code, stored.reply, outplan_id, replayed=True)

            try:
                reply = await handler(cmd, uow, request)
            except DomainError as exc:
                reply = exc.reply()
            body = reply.to_json()
            if isinstance(reply.data, dict) and "id" in reply.data:
                outplan_id = UUID(reply.data["id"])
            await uow.inbox.remember(cmd.customer_id, request.message_id, reply.status_code, body)
            await uow.commit()
            return Outcome(reply.status_code, body, outplan_id)

