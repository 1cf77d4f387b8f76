"""The gateway's own refusals, in the shape of a reply's ``error`` (``contracts.ErrorInfo``).

A refusal the worker makes is passed on as it is (HTTP status = the reply's ``status_code``, body =
its ``error``); these are the ones made before a command is sent, or when no reply comes. Each is
``{"status", "reason", "message", "details"}`` like the worker's, so a client reads every error
the same way. The statuses follow the worker's (Google API style names).
"""

from typing import Final

import orjson
from starlette.responses import Response

from contracts import ErrorDetail, ErrorInfo, replies

JSON: Final = "application/json"

UNAUTHENTICATED: Final = "UNAUTHENTICATED"  # 401
PERMISSION_DENIED: Final = "PERMISSION_DENIED"  # 403
UNAVAILABLE: Final = "UNAVAILABLE"  # 503
DEADLINE_EXCEEDED: Final = "DEADLINE_EXCEEDED"  # 504
BAD_GATEWAY: Final = "BAD_GATEWAY"  # 502

CUSTOMER_MISMATCH: Final = "CUSTOMER_MISMATCH"
ROUTE_NOT_FOUND: Final = "ROUTE_NOT_FOUND"
METHOD_NOT_ALLOWED: Final = "METHOD_NOT_ALLOWED"
BROKER_UNAVAILABLE: Final = "BROKER_UNAVAILABLE"
NO_REPLY: Final = "NO_REPLY"
UNREADABLE_REPLY: Final = "UNREADABLE_REPLY"
INVALID_IDEMPOTENCY_KEY: Final = "INVALID_IDEMPOTENCY_KEY"

# RFC 9110 §15.5.14 and §15.5.16: 413 Content Too Large, 415 Unsupported Media Type.
STATUS_BY_CODE: Final = {
    400: replies.INVALID_ARGUMENT,
    401: UNAUTHENTICATED,
    403: PERMISSION_DENIED,
    404: replies.NOT_FOUND,
    405: replies.INVALID_ARGUMENT,
    413: replies.INVALID_ARGUMENT,
    415: replies.INVALID_ARGUMENT,
    502: BAD_GATEWAY,
    503: UNAVAILABLE,
    504: DEADLINE_EXCEEDED,
}


def error_response(
    status_code: int,
    reason: str,
    message: str,
    details: list[ErrorDetail] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """A JSON ``ErrorInfo`` body with ``status_code``; its ``status`` follows the code
    (``STATUS_BY_CODE``)."""
    info = ErrorInfo(
        status=STATUS_BY_CODE.get(status_code, replies.INTERNAL),
        reason=reason,
        message=message,
        details=details or [],
    )
    return json_response(status_code, info.model_dump_json().encode(), headers)


def json_response(status_code: int, body: bytes, headers: dict[str, str] | None = None) -> Response:
    """``body`` (JSON bytes) as ``application/json``; Content-Length from Starlette."""
    return Response(body, status_code, headers={"Content-Type": JSON, **(headers or {})})


def json_bytes(value: object) -> bytes:
    """``value`` as compact UTF-8 JSON."""
    return orjson.dumps(value)
