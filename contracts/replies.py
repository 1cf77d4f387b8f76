"""Replies sent to ``reply_to``: ``status_code`` plus ``data`` or ``error``."""

from typing import Any, Final

from pydantic import BaseModel, ConfigDict

INVALID_ARGUMENT: Final = "INVALID_ARGUMENT"
NOT_FOUND: Final = "NOT_FOUND"
ALREADY_EXISTS: Final = "ALREADY_EXISTS"
INTERNAL: Final = "INTERNAL"

# reasons
VALIDATION_FAILED: Final = "VALIDATION_FAILED"
MALFORMED_JSON: Final = "MALFORMED_JSON"
NOT_AN_OBJECT: Final = "NOT_AN_OBJECT"
BODY_TOO_LARGE: Final = "BODY_TOO_LARGE"
UNSUPPORTED_CONTENT_TYPE: Final = "UNSUPPORTED_CONTENT_TYPE"
UNSUPPORTED_CONTENT_ENCODING: Final = "UNSUPPORTED_CONTENT_ENCODING"  # only identity: no compressed bodies
UNKNOWN_COMMAND: Final = "UNKNOWN_COMMAND"
MESSAGE_ID_REQUIRED: Final = "MESSAGE_ID_REQUIRED"
INVALID_PROPERTIES: Final = "INVALID_PROPERTIES"  # an AMQP property or header that cannot be decoded
OUTPLAN_NOT_FOUND: Final = "OUTPLAN_NOT_FOUND"
IDEMPOTENCY_KEY_REUSED: Final = "IDEMPOTENCY_KEY_REUSED"
INTERNAL_ERROR: Final = "INTERNAL_ERROR"


class ErrorDetail(BaseModel):
    """One thing wrong with a request: ``field`` is the dotted path of a body field
    (``source.target``; ``""`` for the body as a whole) or the name of an AMQP property or header;
    ``message`` says what is wrong with it and what to send instead."""

    model_config = ConfigDict(frozen=True)

    field: str
    message: str


class ErrorInfo(BaseModel):
    """Why a request was refused: ``status`` (``INVALID_ARGUMENT``, ``NOT_FOUND``, ``ALREADY_EXISTS``
    or ``INTERNAL``), ``reason`` (e.g. ``VALIDATION_FAILED``, ``OUTPLAN_NOT_FOUND``), a one-line
    ``message``, and ``details``, one per failing field where fields can be named."""

    model_config = ConfigDict(frozen=True)

    status: str
    reason: str
    message: str
    details: list[ErrorDetail] = []


class Reply(BaseModel):
    """``{"status_code": 2xx, "data": ...}`` or ``{"status_code": 4xx|5xx, "error": ...}``."""

    # Not in the docstring, which is the published schema's description: the reply to an applied
    # change is not serialised by this model. ``worker.service.success_reply`` builds its bytes
    # around the outplan's JSON; ``tests/unit/test_wire_replies.py`` proves them equal to ``to_json``.

    model_config = ConfigDict(frozen=True)

    status_code: int
    data: Any = None
    error: ErrorInfo | None = None

    @property
    def ok(self) -> bool:
        """Whether the command succeeded (``status_code`` below 400)."""
        return self.status_code < 400

    def to_json(self) -> bytes:
        """The reply as sent: compact UTF-8 JSON, ``data`` or ``error`` left out when ``None``."""
        return self.model_dump_json(exclude_none=True).encode()
