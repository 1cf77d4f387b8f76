"""Domain values and errors the handlers work with."""

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from contracts import ErrorInfo, Outplan, Reply, replies


@dataclass(frozen=True, slots=True)
class Versioned:
    """An outplan as stored, with its version (1 at create, +1 per change)."""

    outplan: Outplan
    version: int


class ConcurrentChange(Exception):
    """Another writer changed an outplan of this batch, or recorded one of its message ids, first.

    Nothing of the batch was written; reading and applying it again gives the right answer.
    """


@dataclass(frozen=True, slots=True)
class PagePosition:
    """Where the next page starts: strictly older than (tm_create, id)."""

    tm_create: datetime  # aware, UTC, within years 1 to 9999: bound to the query as it is
    id: UUID | None  # None: a bare tm_create token, everything strictly older


class DomainError(Exception):
    """An expected refusal; carries the reply the caller gets."""

    status_code = 400
    status = replies.INVALID_ARGUMENT
    reason = replies.VALIDATION_FAILED

    def reply(self) -> Reply:
        """The refusal: the class's status code, ``status`` and ``reason``, ``str(self)`` as the
        message, no details."""
        return Reply(
            status_code=self.status_code,
            error=ErrorInfo(status=self.status, reason=self.reason, message=str(self)),
        )


class OutplanNotFound(DomainError):
    """404 ``OUTPLAN_NOT_FOUND``: the customer has no such outplan (another customer's counts as
    none, and so does a deleted one, unless a get asks for it with ``include_deleted``)."""

    status_code = 404
    status = replies.NOT_FOUND
    reason = replies.OUTPLAN_NOT_FOUND

    def __init__(self, outplan_id: UUID) -> None:
        super().__init__(f"outplan {outplan_id} was not found")


class IdempotencyKeyReused(DomainError):
    """409 ``IDEMPOTENCY_KEY_REUSED``: the customer's ``message_id`` was recorded for another
    command, or for the same command meaning something else (another fingerprint)."""

    status_code = 409
    status = replies.ALREADY_EXISTS
    reason = replies.IDEMPOTENCY_KEY_REUSED

    def __init__(self, message_id: str) -> None:
        super().__init__(
            f"message_id {message_id!r} was already used by this customer for a different command"
            " or body; send a new message_id for a new request"
        )
