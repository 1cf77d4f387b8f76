"""Producers inject the current trace context; subscribers continue the trace an event carries.

With the OpenTelemetry SDK recording in memory, and, in a subprocess, with OpenTelemetry not
importable at all (``contracts`` must work the same without it).
"""

import subprocess
import sys
import uuid

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from contracts import Applied, Projection, parse_event, tracing
from tests.support.events import event_body
from tests.support.spans import recorder, remote_parent

pytestmark = pytest.mark.unit

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN_ID = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{TRACE_ID:032x}-{SPAN_ID:016x}-01"


def test_applying_an_event_continues_the_trace_it_carries() -> None:
    spans = recorder()
    event = parse_event(
        event_body("outplan_created", 1, trace={"traceparent": TRACEPARENT, "tracestate": "vendor=abc"})
    )
    assert Projection(destination="dialer.outplans").apply(event) == Applied.APPLIED
    (span,) = spans.get_finished_spans()
    assert span.name == "process dialer.outplans" and span.kind is SpanKind.CONSUMER
    assert span.parent is not None and span.parent.is_remote
    assert (span.parent.trace_id, span.parent.span_id) == (TRACE_ID, SPAN_ID)
    assert span.context.trace_id == TRACE_ID
    assert span.context.trace_state.get("vendor") == "abc"
    assert dict(span.attributes or {}) == {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "dialer.outplans",
        "messaging.message.id": str(event.id),
        "messaging.rabbitmq.destination.routing_key": "outplan_created",
        "cloudevents.event_id": str(event.id),
        "cloudevents.event_type": "outplan_created",
        "cloudevents.event_source": "outplan-worker",
        "cloudevents.event_subject": str(event.subject),
        "outplan.projection.result": "applied",
    }


def test_the_span_names_the_event_exchange_by_default_and_says_what_apply_did() -> None:
    spans = recorder()
    event = parse_event(event_body("outplan_updated", 2, trace={"traceparent": TRACEPARENT}))
    projection = Projection()
    projection.apply(event)
    projection.apply(event)
    first, second = spans.get_finished_spans()
    assert first.name == second.name == "process outplan.events"
    assert [s.attributes and s.attributes["outplan.projection.result"] for s in (first, second)] == [
        "after_gap",
        "duplicate",
    ]


def test_an_event_without_trace_context_starts_a_trace_of_its_own() -> None:
    spans = recorder()
    Projection().apply(parse_event(event_body("outplan_created", 1)))
    (span,) = spans.get_finished_spans()
    assert span.parent is None and span.context.trace_id != TRACE_ID


@pytest.mark.parametrize(
    "traceparent",
    [
        "not a traceparent",
        f"00-{0:032x}-{SPAN_ID:016x}-01",  # an all-zero trace id is invalid
        f"00-{TRACE_ID:032x}-{0:016x}-01",  # so is an all-zero parent id
        f"ff-{TRACE_ID:032x}-{SPAN_ID:016x}-01",  # version ff is forbidden
        f"00-{TRACE_ID:032x}"[:-1] + f"-{SPAN_ID:016x}-01",  # one hex digit short
    ],
)
def test_a_malformed_traceparent_is_ignored_not_an_error(traceparent: str) -> None:
    spans = recorder()
    event = parse_event(event_body("outplan_created", 1, trace={"traceparent": traceparent}))
    assert Projection().apply(event) == Applied.APPLIED
    (span,) = spans.get_finished_spans()
    assert span.parent is None and span.context.trace_id not in (0, TRACE_ID)


def test_an_error_while_applying_is_recorded_and_raised() -> None:
    spans = recorder()
    event = parse_event(event_body("outplan_created", 1, trace={"traceparent": TRACEPARENT}))
    with pytest.raises(RuntimeError, match="disk full"), tracing.processing(event, "q"):
        raise RuntimeError("disk full")
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


def test_inject_writes_the_current_span_context() -> None:
    with trace.use_span(remote_parent(TRACE_ID, SPAN_ID)):
        headers = tracing.inject({})
    assert headers == {"traceparent": TRACEPARENT}


def test_inject_writes_nothing_without_a_current_span() -> None:
    assert tracing.inject({"x-other": "kept"}) == {"x-other": "kept"}


def test_the_environment_carrier_is_the_context_of_the_block() -> None:
    environ = {"TRACEPARENT": TRACEPARENT, "TRACESTATE": "vendor=abc", "PATH": "/bin"}
    with tracing.environment_context(environ):
        headers = tracing.inject({})
    assert headers == {"traceparent": TRACEPARENT, "tracestate": "vendor=abc"}
    assert tracing.inject({}) == {}, "the context outlived the block"


@pytest.mark.parametrize(
    "environ", [{}, {"TRACEPARENT": ""}, {"TRACEPARENT": "garbage"}, {"traceparent": TRACEPARENT}]
)
def test_no_or_a_malformed_environment_carrier_sends_nothing(environ: dict[str, str]) -> None:
    with tracing.environment_context(environ):
        assert tracing.inject({}) == {}


def test_a_span_of_the_caller_under_the_environment_context_is_what_is_sent() -> None:
    spans = recorder()
    with (
        tracing.environment_context({"TRACEPARENT": TRACEPARENT}),
        trace.get_tracer("test").start_as_current_span("send") as span,
    ):
        headers = tracing.inject({})
    assert headers["traceparent"] == f"00-{TRACE_ID:032x}-{span.get_span_context().span_id:016x}-01"
    (finished,) = spans.get_finished_spans()
    assert finished.parent is not None and finished.parent.span_id == SPAN_ID


WITHOUT_OPENTELEMETRY = f"""
import sys
sys.modules["opentelemetry"] = None  # any `import opentelemetry...` now raises ImportError
from contracts import Applied, Projection, parse_event, tracing
from tests.support.events import event_body

assert not tracing.available()
event = parse_event(event_body("outplan_created", 1, trace={{"traceparent": "{TRACEPARENT}"}}))
projection = Projection(destination="q")
assert projection.apply(event) == Applied.APPLIED and projection.apply(event) == Applied.DUPLICATE
with tracing.processing(event, "q") as span:
    assert span is None
with tracing.environment_context({{"TRACEPARENT": "{TRACEPARENT}"}}):
    assert tracing.inject({{"k": "v"}}) == {{"k": "v"}}
import contracts.client  # aio-pika is there; OpenTelemetry is not needed for the client either
print(sorted(m for m in sys.modules if m.startswith("opentelemetry") and sys.modules[m] is not None))
"""


def test_contracts_work_the_same_without_opentelemetry() -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_OPENTELEMETRY], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_importing_contracts_loads_no_opentelemetry() -> None:
    check = (
        "import sys, contracts, contracts.tracing\n"
        "print(any(m.startswith('opentelemetry') for m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_every_event_gets_its_own_span_id() -> None:
    spans = recorder()
    projection = Projection()
    for version in (1, 2):
        projection.apply(
            parse_event(
                event_body(
                    "outplan_updated",
                    version,
                    outplan_id=str(uuid.uuid4()),
                    trace={"traceparent": TRACEPARENT},
                )
            )
        )
    ids = {s.context.span_id for s in spans.get_finished_spans()}
    assert len(ids) == 2 and SPAN_ID not in ids
