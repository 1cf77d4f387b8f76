"""Turn pydantic validation errors into field-named, human-readable details."""

import json
import re
from collections import deque
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from .fields import unstorable
from .replies import ErrorDetail

_PLAIN = re.compile(r"[A-Za-z0-9_]+")
_INTEGER = "must be an integer (a JSON number without a fraction; not a string or a boolean)"
_MESSAGES: dict[str, str] = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "int_type": _INTEGER,
    "int_from_float": _INTEGER,
    "int_parsing": _INTEGER,
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "uuid_type": "must be a UUID string",
    "uuid_parsing": "must be a UUID string",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
}


def field_path(loc: tuple[int | str, ...]) -> str:
    """``source.target``; a key that is not a plain name is quoted as JSON (``"" ``, ``"a b"``)."""
    return ".".join(
        str(part) if isinstance(part, int) or _PLAIN.fullmatch(part) else json.dumps(part) for part in loc
    )


def _message(error: ErrorDetails) -> str:
    ctx: dict[str, Any] = error.get("ctx") or {}
    kind = error["type"]
    if kind == "value_error":
        text = str(ctx.get("error", error["msg"]))
    elif kind == "string_too_long":
        text = f"must be at most {ctx['max_length']} characters"
    elif kind == "greater_than_equal":
        text = f"must be at least {ctx['ge']}"
    elif kind == "less_than_equal":
        text = f"must be at most {ctx['le']}"
    elif kind == "literal_error":
        text = f"must be one of {ctx['expected']}"
    else:
        text = _MESSAGES.get(kind, error["msg"])
    name = field_path(error["loc"])
    # Messages that already name the field (the seconds-for-milliseconds hint) stand alone.
    return text if text.startswith(name + " ") or not name else f"{name} {text}"


def validation_details(exc: ValidationError) -> list[ErrorDetail]:
    """One detail per failing field, in the order pydantic found them."""
    return [
        ErrorDetail(field=field_path(error["loc"]), message=_message(error))
        for error in exc.errors(include_url=False, include_input=False)
    ]


def summarise(details: list[ErrorDetail]) -> str:
    """A one-line message naming every failing field."""
    if len(details) == 1:
        return details[0].message
    return f"{len(details)} fields are invalid: " + "; ".join(d.message for d in details)


def unstorable_details(body: bytes) -> list[ErrorDetail]:
    """The strings of a JSON body that PostgreSQL could not store, one detail each, keys included.

    For a body the strict parser refused: RFC 8259 allows an escaped lone surrogate (``"\\ud800"``),
    which names no character. The standard library parses such text, so the field can be named.
    Empty when ``body`` is not a UTF-8 JSON object at all or holds no such string.
    """
    try:
        document = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return []
    if not isinstance(document, dict):
        return []  # not an object: that is the answer
    details: list[ErrorDetail] = []
    pending: deque[tuple[tuple[int | str, ...], Any]] = deque([((), document)])
    while pending:  # iterative: the document may nest as deep as the parser allowed
        loc, value = pending.popleft()
        if isinstance(value, str):
            problem = unstorable(value)
            if problem is not None:
                details.append(ErrorDetail(field=field_path(loc), message=f"{field_path(loc)} {problem}"))
        elif isinstance(value, dict):
            for key, item in value.items():
                problem = unstorable(key)
                if problem is not None:
                    name = field_path((*loc, key))
                    details.append(ErrorDetail(field=name, message=f"the key {name} {problem}"))
                pending.append(((*loc, key), item))
        elif isinstance(value, list):
            pending.extend(((*loc, i), item) for i, item in enumerate(value))
    return details
