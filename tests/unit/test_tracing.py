"""Trace context in and out of the worker's spans, recorded by the SDK in memory, or with the API alone."""

import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags
from opentelemetry.util._once import Once

from worker.logs import add_trace_ids
from worker.observability import tracing
from worker.observability.spans import CommandTrace, Peer, Tracing

pytestmark = pytest.mark.unit

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
TRACESTATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
BROKER = Peer("rabbit.example", 5672)
DATABASE = Peer("db.example", 5432, "outplans")
MALFORMED: list[object] = [
    "garbage",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",  # no flags
    "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # an all-zero trace id
    "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # an all-zero parent id
    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # version ff is invalid
    "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",  # uppercase
    b"\xff\xfe not ascii",
    12345,
    {"nested": "table"},
    "",
]


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def recording(exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch) -> Tracing:
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)  # the SDK would make no spans
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider.get_tracer("test"))


API_ONLY = Tracing(trace.NoOpTracer(), recording=False)


def command(tracing: Tracing, headers: dict[str, object], message_id: str = "m-1") -> CommandTrace:
    return tracing.start_command(
        headers,
        queue="outplan-worker.commands",
        exchange="outplan.commands",
        routing_key="outplan.create",
        message_id=message_id,
        correlation_id="c-1",
        body_size=123,
        peer=BROKER,
    )


def finished(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


def test_an_incoming_context_is_the_parent_of_the_process_span(
    recording: Tracing, exporter: InMemorySpanExporter
) -> None:
    traced = command(recording, {"traceparent": TRACEPARENT, "tracestate": TRACESTATE})
    traced.finish(command="outplan.create", status_code=201)

    span = finished(exporter)["process outplan-worker.commands"]
    assert span.kind is SpanKind.CONSUMER
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT_ID
    assert span.parent.is_remote
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes or {}) == {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "outplan.commands",
        "messaging.rabbitmq.destination.routing_key": "outplan.create",
        "messaging.message.id": "m-1",
        "messaging.message.conversation_id": "c-1",
        "messaging.message.body.size": 123,
        "server.address": "rabbit.example",
        "server.port": 5672,
        "outplan.command": "outplan.create",
        "outplan.reply.status_code": 201,
    }
    # What goes on (reply headers, events): the process span's context, the tracestate kept.
    own = f"00-{TRACE_ID}-{span.context.span_id:016x}-01"
    assert traced.traceparent == own
    assert traced.tracestate == TRACESTATE
    assert traced.headers() == {"traceparent": own, "tracestate": TRACESTATE}


def test_without_incoming_context_a_command_starts_a_trace(
    recording: Tracing, exporter: InMemorySpanExporter
) -> None:
    traced = command(recording, {"x-other": "header"})
    traced.finish(command="outplan.get", status_code=200)
    span = finished(exporter)["process outplan-worker.commands"]
    assert span.parent is None
    ids = f"{span.context.trace_id:032x}-{span.context.span_id:016x}-{span.context.trace_flags:02x}"
    assert traced.traceparent == f"00-{ids}"
    assert traced.tracestate is None


@pytest.mark.parametrize("value", MALFORMED, ids=repr)
def test_a_malformed_traceparent_is_ignored(
    recording: Tracing, exporter: InMemorySpanExporter, value: object
) -> None:
    traced = command(recording, {"traceparent": value, "tracestate": TRACESTATE})
    traced.finish(command="outplan.create", status_code=201)
    span = finished(exporter)["process outplan-worker.commands"]
    assert span.parent is None  # a trace of its own, not an error
    assert traced.traceparent is not None and TRACE_ID not in traced.traceparent
    assert traced.tracestate is None  # a tracestate without its traceparent means nothing

    api_only = command(API_ONLY, {"traceparent": value, "tracestate": TRACESTATE})
    assert (api_only.traceparent, api_only.tracestate, api_only.headers()) == (None, None, {})


@pytest.mark.parametrize(
    "encode", [str, str.encode, lambda v: bytearray(v.encode())], ids=["str", "bytes", "bytearray"]
)
def test_with_the_api_only_the_incoming_context_passes_through_unchanged(encode: object) -> None:
    assert callable(encode)
    traced = command(API_ONLY, {"traceparent": encode(TRACEPARENT), "tracestate": encode(TRACESTATE)})
    assert not traced.recording
    assert (traced.traceparent, traced.tracestate) == (TRACEPARENT, TRACESTATE)
    assert traced.headers() == {"traceparent": TRACEPARENT, "tracestate": TRACESTATE}
    with traced.active():  # log lines written meanwhile carry the caller's ids
        current = trace.get_current_span().get_span_context()
        assert (f"{current.trace_id:032x}", f"{current.span_id:016x}") == (TRACE_ID, PARENT_ID)
    assert not trace.get_current_span().get_span_context().is_valid
    traced.finish(command="outplan.create", status_code=500)  # nothing to end: no error


def test_the_reply_span_is_a_child_of_the_process_span_and_5xx_is_an_error(
    recording: Tracing, exporter: InMemorySpanExporter
) -> None:
    traced = command(recording, {"traceparent": TRACEPARENT})
    with traced.publishing_reply("amq.gen-reply", 42, BROKER):
        pass
    traced.finish(command="outplan.update", status_code=500)
    spans = finished(exporter)
    reply, process = spans["publish amq.default"], spans["process outplan-worker.commands"]
    assert reply.kind is SpanKind.PRODUCER
    assert reply.parent is not None and reply.parent.span_id == process.context.span_id
    assert reply.attributes is not None
    assert reply.attributes["messaging.rabbitmq.destination.routing_key"] == "amq.gen-reply"
    assert reply.attributes["messaging.destination.name"] == "amq.default"
    assert process.status.status_code is StatusCode.ERROR
    assert process.attributes is not None and process.attributes["error.type"] == "500"


def test_a_requeued_command_records_the_exception_class(
    recording: Tracing, exporter: InMemorySpanExporter
) -> None:
    traced = command(recording, {})
    traced.finish(command="outplan.create", status_code=None, error_type="KeyError")
    span = finished(exporter)["process outplan-worker.commands"]
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["error.type"] == "KeyError"
    assert "outplan.reply.status_code" not in span.attributes


def test_a_batch_span_links_every_command_it_serves(
    recording: Tracing, exporter: InMemorySpanExporter
) -> None:
    commands = [
        command(recording, {"traceparent": TRACEPARENT}, "m-1"),
        command(recording, {}, "m-2"),
        command(recording, {"traceparent": "garbage"}, "m-3"),
    ]
    with recording.batch_write(commands, DATABASE):
        inside = trace.get_current_span()  # current while it runs: its log lines carry its ids
    batch = finished(exporter)["BATCH outplans"]
    assert inside.get_span_context() == batch.context
    assert batch.kind is SpanKind.CLIENT
    assert [link.context for link in batch.links] == [c.span_context for c in commands]
    assert batch.parent is not None and batch.parent.span_id == commands[0].span_context.span_id
    assert dict(batch.attributes or {}) == {
        "db.system.name": "postgresql",
        "db.system": "postgresql",
        "db.namespace": "outplans",
        "db.operation.name": "BATCH",
        "db.operation.batch.size": 3,
        "server.address": "db.example",
        "server.port": 5432,
    }

    with pytest.raises(ConnectionResetError), recording.batch_write(commands[1:2], DATABASE):
        raise ConnectionResetError("gone")
    failed = [s for s in exporter.get_finished_spans() if s.name == "BATCH outplans"][-1]
    assert failed.attributes is not None
    assert "db.operation.batch.size" not in failed.attributes  # the conventions: never 1
    assert failed.attributes["error.type"] == "ConnectionResetError"
    assert failed.status.status_code is StatusCode.ERROR


def test_an_event_publish_continues_and_links_the_stored_command_context(
    recording: Tracing, exporter: InMemorySpanExporter
) -> None:
    published = recording.start_publish(
        exchange="outplan.events",
        routing_key="outplan_created",
        message_id="e-1",
        correlation_id="m-1",
        body_size=500,
        traceparent=TRACEPARENT,
        tracestate=TRACESTATE,
        peer=BROKER,
    )
    published.end()
    span = finished(exporter)["publish outplan.events"]
    assert span.kind is SpanKind.PRODUCER
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT_ID
    assert [(f"{link.context.trace_id:032x}", f"{link.context.span_id:016x}") for link in span.links] == [
        (TRACE_ID, PARENT_ID)
    ]
    assert published.headers == {
        "traceparent": f"00-{TRACE_ID}-{span.context.span_id:016x}-01",
        "tracestate": TRACESTATE,
    }
    assert span.attributes is not None and span.attributes["messaging.message.id"] == "e-1"

    nacked = recording.start_publish(
        exchange="",
        routing_key="some-queue",
        message_id="e-2",
        correlation_id=None,
        body_size=1,
        traceparent=None,
        tracestate=None,
        peer=BROKER,
    )
    nacked.end("nacked")
    alone = finished(exporter)["publish amq.default"]
    assert alone.parent is None and not alone.links
    assert alone.status.status_code is StatusCode.ERROR
    assert nacked.headers["traceparent"].startswith(f"00-{alone.context.trace_id:032x}-")


def test_with_the_api_only_an_event_carries_its_stored_context_unchanged() -> None:
    published = API_ONLY.start_publish(
        exchange="outplan.events",
        routing_key="outplan_created",
        message_id="e-1",
        correlation_id="m-1",
        body_size=500,
        traceparent=TRACEPARENT,
        tracestate=TRACESTATE,
        peer=BROKER,
    )
    assert published.headers == {"traceparent": TRACEPARENT, "tracestate": TRACESTATE}
    published.end()
    nothing = API_ONLY.start_publish(
        exchange="outplan.events",
        routing_key="outplan_created",
        message_id="e-2",
        correlation_id=None,
        body_size=1,
        traceparent=None,
        tracestate=None,
        peer=BROKER,
    )
    assert nothing.headers == {}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://postgres:secret@db.example:6432/outplans", Peer("db.example", 6432, "outplans")),
        ("postgresql://postgres@db.example/outplans?sslmode=require", Peer("db.example", 5432, "outplans")),
        # A primary and its standbys: which one answers is not known here.
        (
            "postgresql://u@h1:5432,h2:5432/outplans?target_session_attrs=read-write",
            Peer(None, None, "outplans"),
        ),
        ("amqp://guest:guest@rabbit-1:5672/,amqp://guest:guest@rabbit-2:5672/", Peer(None, None, None)),
        ("postgresql://u@db.example:notaport/outplans", Peer()),
    ],
)
def test_the_server_attributes_come_from_the_url(url: str, expected: Peer) -> None:
    assert Peer.from_url(url, 5432) == expected


def test_log_lines_carry_the_current_span_ids() -> None:
    assert add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}
    context = SpanContext(int(TRACE_ID, 16), int(PARENT_ID, 16), True, TraceFlags(1))
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(context)))
    try:
        assert add_trace_ids(None, "info", {"event": "x"}) == {
            "event": "x",
            "trace_id": TRACE_ID,
            "span_id": PARENT_ID,
        }
    finally:
        otel_context.detach(token)


def test_the_configured_logs_carry_them(capsys: pytest.CaptureFixture[str]) -> None:
    from worker import logs

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.configure("INFO", json=True)
    try:
        with command(API_ONLY, {"traceparent": TRACEPARENT}).active():
            structlog.get_logger("test").info("inside")
        structlog.get_logger("test").info("outside")
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)
    assert [(line["event"], line.get("trace_id"), line.get("span_id")) for line in lines] == [
        ("inside", TRACE_ID, PARENT_ID),
        ("outside", None, None),
    ]


# configure_tracing: the OTEL_* variables


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in (
        "OTEL_SDK_DISABLED",
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
    ):
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch


def test_exporters_are_a_comma_list_with_otlp_by_default() -> None:
    assert tracing.exporter_names({}) == ["otlp"]
    assert tracing.exporter_names({"OTEL_TRACES_EXPORTER": "console, otlp"}) == ["console", "otlp"]
    assert tracing.exporter_names({"OTEL_TRACES_EXPORTER": "none"}) == []
    with pytest.raises(tracing.TracingMisconfigured, match=r"OTEL_TRACES_EXPORTER='zipkin': zipkin is not"):
        tracing.exporter_names({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_grpc_is_refused_in_one_line_naming_the_variable() -> None:
    assert tracing.otlp_protocol({}) == "http/protobuf"
    for variable in ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"):
        with pytest.raises(tracing.TracingMisconfigured) as refused:
            tracing.otlp_protocol({variable: "grpc"})
        message = str(refused.value)
        assert message.startswith(f"{variable}=grpc: ") and "http/protobuf" in message and "\n" not in message
    with pytest.raises(tracing.TracingMisconfigured, match="OTEL_EXPORTER_OTLP_PROTOCOL='http/json'"):
        tracing.otlp_protocol({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    # The signal's own variable wins over the general one.
    assert (
        tracing.otlp_protocol(
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}
        )
        == "http/protobuf"
    )


def test_a_disabled_sdk_sets_nothing(clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv("OTEL_SDK_DISABLED", "true")
    before = trace.get_tracer_provider()
    shutdown = tracing.configure_tracing()
    assert trace.get_tracer_provider() is before
    shutdown()


@pytest.fixture
def no_provider_yet(clean_environment: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """As at a worker's start: no tracer provider set yet in this process (another test may have
    set the global one, which can be set only once; restored afterwards)."""
    clean_environment.setattr(trace, "_TRACER_PROVIDER", None)
    clean_environment.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    return clean_environment


def test_exporting_nothing_records_nothing(no_provider_yet: pytest.MonkeyPatch) -> None:
    # OTEL_TRACES_EXPORTER=none: the API alone, trace context passed through, no span recorded.
    no_provider_yet.setenv("OTEL_TRACES_EXPORTER", "none")
    shutdown = tracing.configure_tracing()
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert not trace.get_tracer("test").start_span("unseen").is_recording()
    shutdown()


def test_an_exporter_named_sets_the_sdk_up(no_provider_yet: pytest.MonkeyPatch) -> None:
    no_provider_yet.setenv("OTEL_TRACES_EXPORTER", "console")
    shutdown = tracing.configure_tracing()
    try:
        assert trace.get_tracer("test").start_span("seen").is_recording()
    finally:
        shutdown()


def test_a_grpc_protocol_stops_the_start(clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(tracing.TracingMisconfigured, match="OTEL_EXPORTER_OTLP_PROTOCOL=grpc"):
        tracing.configure_tracing()


def _console_spans(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    out = capsys.readouterr().out
    decoder, spans, at = json.JSONDecoder(), [], 0
    while (start := out.find("{", at)) >= 0:
        span, at = decoder.raw_decode(out, start)
        spans.append(span)
    return spans


def test_the_console_exporter_with_the_default_service_name(
    clean_environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_environment.setenv("OTEL_TRACES_EXPORTER", "console")
    provider = tracing.build_provider()
    provider.get_tracer("test").start_span("one").end()
    provider.shutdown()
    (span,) = _console_spans(capsys)
    assert span["name"] == "one"
    resource = span["resource"]
    assert isinstance(resource, dict) and resource["attributes"]["service.name"] == "outplan-worker"


def test_otel_service_name_is_honoured_and_none_exports_nothing(
    clean_environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_environment.setenv("OTEL_SERVICE_NAME", "worker-eu-1")
    clean_environment.setenv("OTEL_TRACES_EXPORTER", "console")
    provider = tracing.build_provider()
    provider.get_tracer("test").start_span("two").end()
    provider.shutdown()
    (span,) = _console_spans(capsys)
    resource = span["resource"]
    assert isinstance(resource, dict) and resource["attributes"]["service.name"] == "worker-eu-1"

    clean_environment.setenv("OTEL_TRACES_EXPORTER", "none")
    silent = tracing.build_provider()
    silent.get_tracer("test").start_span("three").end()
    silent.shutdown()
    assert _console_spans(capsys) == []
