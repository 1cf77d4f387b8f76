"""Trace context at the edges: producers inject it into commands, subscribers continue it from events.

OpenTelemetry is optional here: ``contracts`` depends on pydantic alone, and every function below
does nothing (or returns what it was given) when ``opentelemetry-api`` is not installed. With the
API installed but no SDK configured, context is still propagated and no span is recorded; with an
SDK configured by the application, the spans are exported as the application's own.

The wire format is W3C Trace Context (``traceparent``, ``tracestate``): in AMQP headers on
commands, which the global propagator writes (``OTEL_PROPAGATORS``, by default
``tracecontext,baggage``), and as the CloudEvents distributed tracing extension in event bodies,
which is W3C Trace Context by definition, so it is read with that propagator whatever the global
one is.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator, Mapping, MutableMapping
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from .events import OutplanEvent

# Where the OpenTelemetry specification puts a trace context handed to a process through its
# environment (context/env-carriers.md): the propagator's header names, upper-cased.
ENVIRONMENT_CARRIER = ("TRACEPARENT", "TRACESTATE", "BAGGAGE")
INSTRUMENTATION_NAME = "outplan-contracts"


@functools.cache
def _otel() -> SimpleNamespace | None:
    """The OpenTelemetry API modules, or None when it is not installed (imported once, on first use,
    so that ``import contracts`` loads nothing of it)."""
    try:
        from opentelemetry import context, propagate, trace
        from opentelemetry.propagators.textmap import Getter
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        return None

    class EnvironmentGetter(Getter[Mapping[str, str]]):
        """Reads a propagator's header ``traceparent`` from the variable ``TRACEPARENT``."""

        def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
            value = carrier.get(key.upper())
            return None if value is None else [value]

        def keys(self, carrier: Mapping[str, str]) -> list[str]:
            return [key.lower() for key in carrier]

    return SimpleNamespace(
        context=context,
        propagate=propagate,
        trace=trace,
        w3c=TraceContextTextMapPropagator(),
        environment_getter=EnvironmentGetter(),
    )


def available() -> bool:
    """Whether ``opentelemetry-api`` can be imported (nothing here does anything without it)."""
    return _otel() is not None


def inject(headers: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Write the current trace context into ``headers`` (AMQP application headers, str values) with
    the global propagator, and return ``headers``: ``traceparent`` (and ``tracestate``, ``baggage``
    when there are any) with the default propagators, nothing when no span context is current or
    OpenTelemetry is not installed."""
    otel = _otel()
    if otel is not None:
        otel.propagate.inject(headers)
    return headers


@contextlib.contextmanager
def environment_context(environ: Mapping[str, str] | None = None) -> Iterator[None]:
    """Make the trace context in ``environ`` (``os.environ`` when None) current for the block:
    ``TRACEPARENT``, ``TRACESTATE`` and ``BAGGAGE``, the OpenTelemetry specification's environment
    carrier, read with the global propagator. Does nothing when none of them is set or
    OpenTelemetry is not installed; a malformed ``TRACEPARENT`` is ignored (the W3C rule), not an
    error."""
    otel = _otel()
    environ = os.environ if environ is None else environ
    carrier = {name: environ[name] for name in ENVIRONMENT_CARRIER if environ.get(name)}
    if otel is None or not carrier:
        yield
        return
    token = otel.context.attach(otel.propagate.extract(carrier, getter=otel.environment_getter))
    try:
        yield
    finally:
        otel.context.detach(token)


@contextlib.contextmanager
def processing(event: OutplanEvent, destination: str) -> Iterator[Span | None]:
    """Run the block in a CONSUMER span ``process <destination>`` whose parent is the trace context
    the event carries (its CloudEvents ``traceparent`` and ``tracestate``; the current context
    when it has none or a malformed one), and yield the span; yield None, with no span, when
    OpenTelemetry is not installed.

    ``destination`` is the queue (or exchange) the event was consumed from. The attributes follow
    the OpenTelemetry messaging semantic conventions (``messaging.system`` ``rabbitmq``,
    ``messaging.operation.type`` ``process``, ``messaging.destination.name``,
    ``messaging.message.id`` the event id, ``messaging.rabbitmq.destination.routing_key`` the event
    type, which is the routing key it is published with) and the CloudEvents ones
    (``cloudevents.event_id``, ``_type``, ``_source``, ``_subject``). An exception raised in the
    block is recorded on the span, which ends with status ERROR, and propagates.
    """
    otel = _otel()
    if otel is None:
        yield None
        return
    carrier = {}
    if event.traceparent:
        carrier["traceparent"] = event.traceparent
        if event.tracestate:
            carrier["tracestate"] = event.tracestate
    parent = otel.w3c.extract(carrier)
    tracer = otel.trace.get_tracer(INSTRUMENTATION_NAME)
    with tracer.start_as_current_span(
        f"process {destination}",
        context=parent,
        kind=otel.trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": destination,
            "messaging.message.id": str(event.id),
            "messaging.rabbitmq.destination.routing_key": event.type,
            "cloudevents.event_id": str(event.id),
            "cloudevents.event_type": event.type,
            "cloudevents.event_source": event.source,
            "cloudevents.event_subject": str(event.subject),
        },
    ) as span:
        yield span
