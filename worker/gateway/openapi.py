"""The OpenAPI 3.1 document of the gateway (``/openapi.json``), generated from the ``contracts`` models.

Bodies are the commands' JSON Schemas (``CreateOutplan``, ``UpdateBasicInfo``, ``UpdateDialInfo``),
less what the HTTP call supplies itself: ``customer_id`` (the token's; one that is sent must be
the same) and ``id`` (the path's) are no longer required. Answers are ``Outplan`` (without
``customer_id``, as the tutorial shows it), ``OutplanPage`` and, for every refusal, ``ErrorInfo``.
Nothing here repeats a field: a rule changed in ``contracts`` changes the document.
"""

import copy
from typing import Any, Final, Literal

from pydantic import BaseModel

from contracts import CreateOutplan, ErrorInfo, Outplan, OutplanPage, UpdateBasicInfo, UpdateDialInfo, names
from contracts.documents import INTERFACE_VERSION
from contracts.fields import BODY_MAX_BYTES, PAGE_SIZE_MAX

from .routes import CALLS, IDEMPOTENCY_KEY, Call

Schema = dict[str, Any]
OPENAPI_VERSION: Final = "3.1.0"
REF: Final = "#/components/schemas/{model}"

_BODIES: Final[dict[str, type[BaseModel]]] = {
    names.CREATE: CreateOutplan,
    names.UPDATE_BASIC_INFO: UpdateBasicInfo,
    names.UPDATE_DIAL_INFO: UpdateDialInfo,
}
_ERRORS: Final = {
    "400": "Invalid input (the worker's rules, or a body that is not a JSON object); `details` names fields",
    "401": "No token, or one that is expired, forged, malformed or lacks its claims; `reason` says which",
    "403": "The body names another customer than the token's",
    "404": "No such outplan for this customer",
    "409": "The Idempotency-Key was used before for another request",
    "413": f"The body is larger than {BODY_MAX_BYTES} bytes",
    "415": "The body is not application/json",
    "502": "The worker's reply could not be read",
    "503": "The broker cannot be reached, or the connection was lost; retry with the same Idempotency-Key",
    "504": "No reply in time; the command may still be applied: retry with the same Idempotency-Key",
}


def _schema(
    model: type[BaseModel], mode: Literal["validation", "serialization"], components: Schema
) -> Schema:
    schema = model.model_json_schema(mode=mode, ref_template=REF)
    for name, definition in schema.pop("$defs", {}).items():
        components.setdefault(name, definition)
    return schema


def _not_required(schema: Schema, *fields: str) -> Schema:
    schema = copy.deepcopy(schema)
    schema["required"] = [f for f in schema.get("required", []) if f not in fields]
    if "customer_id" in schema.get("properties", {}):
        schema["properties"]["customer_id"]["description"] = (
            "Optional: the token names the customer; when sent, it must be the token's (else 403)."
        )
    if "id" in schema.get("properties", {}):
        schema["properties"]["id"]["description"] = (
            "Optional: the path names the outplan; when sent, the same."
        )
    return schema


def components() -> Schema:
    """``components.schemas``: the request bodies, ``Outplan``, ``OutplanPage``, ``ErrorInfo`` and
    what they refer to."""
    found: Schema = {}
    for model in _BODIES.values():
        found[model.__name__] = _not_required(_schema(model, "validation", found), "customer_id", "id")
    for model in (Outplan, OutplanPage, ErrorInfo):
        found[model.__name__] = _schema(model, "serialization", found)
    outplan = found["Outplan"]
    outplan["properties"].pop("customer_id")
    outplan["required"] = [f for f in outplan["required"] if f != "customer_id"]
    return found


def _ref(name: str) -> Schema:
    return {"$ref": REF.format(model=name)}


def _json(name: str, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _operation(call: Call) -> Schema:
    parameters: list[Schema] = []
    if "{id}" in call.path:
        parameters.append(
            {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
        )
    query = {
        "page_size": {"type": "integer", "minimum": 1, "maximum": PAGE_SIZE_MAX, "default": PAGE_SIZE_MAX},
        "page_token": {"type": "string", "default": ""},
        "include_deleted": {"type": "boolean", "default": False},
    }
    parameters += [{"name": name, "in": "query", "schema": query[name]} for name in call.query]
    if call.command in names.MUTATIONS:
        parameters.append(
            {
                "name": IDEMPOTENCY_KEY,
                "in": "header",
                "description": "The command's message_id: a retry with the same key gets the first answer "
                "and changes nothing again. Without it every request is new, so a retried POST "
                "creates a second outplan.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            }
        )
    ok = "201" if call.command == names.CREATE else "200"
    answer = (
        _json("OutplanPage", "One page, newest first")
        if call.command == names.LIST
        else _json("Outplan", "The outplan" + (" as deleted" if call.command == names.DELETE else ""))
    )
    operation: Schema = {
        "operationId": call.command.replace(".", "_"),
        "summary": call.summary,
        "description": f"Sends `{call.command}` over AMQP and answers with its reply.",
        "parameters": parameters,
        "responses": {ok: answer, **{code: _json("ErrorInfo", text) for code, text in _ERRORS.items()}},
    }
    if call.body:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(_BODIES[call.command].__name__)}},
        }
    return operation


def document() -> Schema:
    """The OpenAPI 3.1.0 document: the six calls, their bodies and answers, both token methods."""
    paths: Schema = {}
    for call in CALLS:
        paths.setdefault(call.path, {})[call.method.lower()] = _operation(call)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "outplan-worker gateway",
            "version": INTERFACE_VERSION,
            "description": "Outplans over HTTP: each call is one command to the outplan worker over AMQP. "
            "Times (dial_timeout, try_interval) are in milliseconds.",
        },
        "paths": paths,
        "components": {
            "schemas": components(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "token": {"type": "apiKey", "in": "query", "name": "token"},
            },
        },
        "security": [{"bearer": []}, {"token": []}],
    }
