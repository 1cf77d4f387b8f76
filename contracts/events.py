"""Events (past tense) as CloudEvents 1.0 structured JSON, and ``parse_event`` for subscribers."""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, cast
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    WithJsonSchema,
    model_serializer,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from .outplan import Outplan

_TRACE_CONTEXT_DESCRIPTIONS = {
    "traceparent": "CloudEvents distributed tracing extension: the W3C traceparent of the command "
    "that caused the event (version-traceid-parentid-flags). Absent when the command carried none.",
    "tracestate": "CloudEvents distributed tracing extension: the W3C tracestate that came with "
    "traceparent, when there was one.",
}


def _wire_time(moment: datetime) -> str:
    """``2026-11-27T00:38:07.165728Z``: UTC, always six fraction digits (a naive time is taken as UTC).

    The form event bodies have always had on the wire; pydantic's own would drop a zero fraction
    (``…:07Z``), so a re-serialised event would differ from the published bytes."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


# Serialised as the event bodies are written; the JSON Schema stays pydantic's date-time string.
EventTime = Annotated[
    datetime,
    PlainSerializer(_wire_time, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class OutplanEvent(BaseModel):
    """The CloudEvents 1.0 envelope every outplan event shares (structured mode, JSON).

    ``source`` is the worker's configured source (``outplan-worker`` by default), ``subject`` the
    outplan id, ``time`` the change's time (the outplan's ``tm_update``, RFC 3339 in UTC with six
    fraction digits). Extension attributes: ``customerid``; ``outplanversion``, 1 at create and +1
    per change; ``eventsequence``, numbering every event of every outplan in commit order without
    gaps. ``data`` is the outplan after the change, as ``outplan.get`` returns it.

    ``traceparent`` and ``tracestate`` are the CloudEvents distributed tracing extension: the W3C
    trace context (https://www.w3.org/TR/trace-context/) of the command that caused the event, as
    it was when the event was written. They are stored with the event, so a re-publish or a replay
    carries the same values; they are absent (not ``null``) from events written without a trace
    context, and from those written before the worker carried one.

    Published bodies are not serialised by this model: the batch write builds them in PostgreSQL
    (``outplan_traced_event_body``, called by ``worker.persistence.batch_write.write_changes``), and
    ``tests/integration/test_wire_events.py`` proves them byte for byte equal to ``model_dump_json``.
    """

    # Unknown extension attributes are ignored so that subscribers survive additions.
    model_config = ConfigDict(extra="ignore", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: UUID
    source: str
    type: str
    subject: UUID
    time: EventTime
    datacontenttype: Literal["application/json"] = "application/json"
    customerid: UUID
    outplanversion: Annotated[int, Field(ge=1)]
    eventsequence: Annotated[int, Field(ge=1)]
    traceparent: str | None = None
    tracestate: str | None = None
    data: Outplan

    @model_serializer(mode="wrap")
    def _omit_absent_trace_context(self, handler: SerializerFunctionWrapHandler) -> Any:
        # An event without trace context has no such attributes at all, as the CloudEvents
        # extension asks, and as the bodies written before it existed.
        out = handler(self)
        if isinstance(out, dict):
            if out.get("traceparent") is None:
                out.pop("traceparent", None)
            if out.get("tracestate") is None:
                out.pop("tracestate", None)
        return out

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # The schema of the fields as declared, not of the wrapping serializer above (which would
        # read as "any value"); on the wire the two attributes are strings when present.
        declared = {key: value for key, value in core_schema.items() if key != "serialization"}
        schema = handler(cast(CoreSchema, declared))
        schema = handler.resolve_ref_schema(schema)
        for name in ("traceparent", "tracestate"):
            schema["properties"][name] = {
                "type": "string",
                "title": name.capitalize(),
                "description": _TRACE_CONTEXT_DESCRIPTIONS[name],
            }
        return schema


class OutplanCreated(OutplanEvent):
    """An outplan was created: ``data`` is the outplan as created, ``outplanversion`` is 1."""

    type: Literal["outplan_created"] = "outplan_created"


class OutplanUpdated(OutplanEvent):
    """An outplan's basic or dial info was replaced: ``data`` is the outplan after the change.

    Every accepted update is announced, even one that left every value as it was.
    """

    type: Literal["outplan_updated"] = "outplan_updated"


class OutplanDeleted(OutplanEvent):
    """An outplan was deleted: ``data`` is its final state, ``tm_delete`` set. Campaigns stop
    using it."""

    type: Literal["outplan_deleted"] = "outplan_deleted"


AnyOutplanEvent = Annotated[OutplanCreated | OutplanUpdated | OutplanDeleted, Field(discriminator="type")]
_EVENT = TypeAdapter[OutplanCreated | OutplanUpdated | OutplanDeleted](AnyOutplanEvent)


def parse_event(body: bytes | str) -> OutplanCreated | OutplanUpdated | OutplanDeleted:
    """Validate a CloudEvents body; raises ``pydantic.ValidationError`` naming what is wrong."""
    return _EVENT.validate_json(body)
