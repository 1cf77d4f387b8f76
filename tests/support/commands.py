"""Commands as a producer sends them: a customer, the tutorial's caller ID, create bodies, requests
decoded as the worker decodes them, and the validation errors a body gets."""

import json
import uuid
from typing import Any, TypeVar, overload

import pytest
from pydantic import BaseModel, ValidationError

from contracts import CreateOutplan, validation_details
from worker.requests import Request, decode

#: A customer for tests without a database (tests with one take the ``customer_id`` fixture).
CUSTOMER = str(uuid.uuid4())
#: The tutorial's caller ID: valid, and stored as it is written.
SOURCE = {"type": "tel", "target": "+15559876543"}
#: ``SOURCE`` as JSON text, for bodies written out by hand.
SOURCE_JSON = json.dumps(SOURCE)

Model = TypeVar("Model", bound=BaseModel)


def source_json(**raw_fields: str) -> str:
    """``SOURCE`` as JSON text, with ``raw_fields`` added exactly as written: a JSON escape such as
    ``\\u0000`` stays an escape, for the worker's parser to decode."""
    added = "".join(f', "{name}": "{value}"' for name, value in raw_fields.items())
    return SOURCE_JSON.removesuffix("}") + added + "}"


def create_body(customer_id: Any = CUSTOMER, **fields: Any) -> dict[str, Any]:
    """The body of an ``outplan.create``: the customer, ``SOURCE``, then ``fields`` over them.

    A ``uuid.UUID`` customer is written as its string; any other value is sent as it is, so that
    a test can send ``42`` or ``"not a uuid"``.
    """
    customer = str(customer_id) if isinstance(customer_id, uuid.UUID) else customer_id
    return {"customer_id": customer, "source": dict(SOURCE), **fields}


def create_json(customer_id: Any = CUSTOMER, **fields: Any) -> bytes:
    """``create_body`` as the bytes a producer publishes."""
    return json.dumps(create_body(customer_id, **fields)).encode()


def dial_info_body(customer_id: Any = CUSTOMER, **fields: Any) -> dict[str, Any]:
    """The body of an ``outplan.update_dial_info`` of a new id: ``SOURCE``, the default timings and
    one try per destination, then ``fields`` over them."""
    return {
        "customer_id": customer_id,
        "id": str(uuid.uuid4()),
        "source": dict(SOURCE),
        "dial_timeout": 30000,
        "try_interval": 60000,
        **{f"max_try_count_{i}": 1 for i in range(5)},
        **fields,
    }


def create_text(*members: str, customer_id: Any = CUSTOMER) -> str:
    """An ``outplan.create`` body written out by hand: the customer, ``SOURCE``, then ``members``,
    each ``"key": value`` JSON text kept exactly as written (repeated keys, escapes, ``NaN``)."""
    return "{" + ", ".join([f'"customer_id": "{customer_id}"', f'"source": {SOURCE_JSON}', *members]) + "}"


def request(command: str, body: dict[str, Any] | str, message_id: str | None = None) -> Request:
    """``command`` decoded as the worker's consumer decodes it, with a fresh ``message_id`` unless given.

    ``body`` is a dict (UUIDs and other values are written as strings) or the exact JSON text.
    """
    text = body if isinstance(body, str) else json.dumps(body, default=str)
    decoded = decode(
        text.encode(),
        content_type="application/json",
        routing_key=command,
        type_=None,
        message_id=message_id or str(uuid.uuid4()),
        correlation_id=None,
    )
    assert isinstance(decoded, Request), decoded
    return decoded


@overload
def validated(body: dict[str, Any]) -> CreateOutplan: ...


@overload
def validated(body: dict[str, Any], model: type[Model]) -> Model: ...


def validated(body: dict[str, Any], model: type[BaseModel] = CreateOutplan) -> BaseModel:
    """``body`` as ``model`` reads it off the wire (its JSON text); raises ``ValidationError``."""
    return model.model_validate_json(json.dumps(body))


def errors(body: dict[str, Any] | bytes, model: type[BaseModel] = CreateOutplan) -> dict[str, str]:
    """What ``model`` refuses in ``body`` (which must be invalid): each field's message, by field."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(ValidationError) as info:
        model.model_validate_json(raw)
    return {d.field: d.message for d in validation_details(info.value)}
