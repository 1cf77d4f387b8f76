"""Trace context through the worker: what it takes in, the spans it records, what it passes on.

A command's W3C trace context (``traceparent``, ``tracestate``; https://www.w3.org/TR/trace-context/)
comes in its AMQP headers and is read with the global propagator (``OTEL_PROPAGATORS``, W3C trace
context and baggage by default). A malformed one is ignored: the command starts a new trace (or,
with the API only, has none); it is never a reason to refuse the command.

Spans follow the OpenTelemetry semantic conventions for messaging (RabbitMQ) and databases:

- ``process <queue>`` (CONSUMER), one per command delivery, child of the incoming context;
- ``BATCH <database>`` (CLIENT), one per group-commit batch write, linked to the process spans of
  the commands it serves (and child of the first of them, so a lone command's trace shows its write);
- ``publish <exchange>`` (PRODUCER): the reply (child of the process span), and each event the
  relay or ``replay`` publishes (child of the causing command's stored context, and linked to it).

With the API only (no SDK configured) no span is recorded: the incoming context is current while
the command is handled (so log lines carry its ids), and goes on unchanged in the reply's headers
and in the events. Recording or not is decided once per provider (:func:`current`), so the hot
path builds no attributes when nothing records them.
"""

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import (
    Link,
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACER_NAME = "outplan_worker"
DEFAULT_EXCHANGE = "amq.default"  # the conventions' name for the default exchange ("")
_W3C = TraceContextTextMapPropagator()  # events store W3C trace context, whatever OTEL_PROPAGATORS says


@dataclass(frozen=True, slots=True)
class Peer:
    """The server a span talks to (``server.address``, ``server.port``) and, for a database, its name."""

    address: str | None = None
    port: int | None = None
    namespace: str | None = None

    @classmethod
    def from_url(cls, url: str, default_port: int) -> "Peer":
        """From an AMQP or PostgreSQL URL (credentials ignored). A list of servers (AMQP URLs
        separated by commas, or a multi-host PostgreSQL URL) names no one server: which one answers
        is decided when connecting. An unreadable URL gives an empty Peer."""
        try:
            parts = urlsplit(url)
            namespace = parts.path.split(",", 1)[0].lstrip("/") or None
            if "," in url.split("?", 1)[0]:
                return cls(namespace=namespace)
            return cls(parts.hostname, parts.port or default_port, namespace)
        except ValueError:
            return cls()

    def attributes(self) -> dict[str, str | int]:
        """``server.address`` and ``server.port``, those known."""
        out: dict[str, str | int] = {}
        if self.address:
            out["server.address"] = self.address
        if self.port:
            out["server.port"] = self.port
        return out


class _HeaderGetter(Getter[Mapping[str, object]]):
    """Reads AMQP headers: a value is a short or long string (``str``), or ``bytes`` when it was not
    UTF-8 or was sent as a byte array; anything else (a number, a table) is no trace context."""

    def get(self, carrier: Mapping[str, object], key: str) -> list[str] | None:
        """The header's value as the one string a propagator expects, or None."""
        value = carrier.get(key)
        if isinstance(value, str):
            return [value]
        if isinstance(value, bytes | bytearray):
            try:
                return [value.decode("ascii")]
            except UnicodeDecodeError:
                return None  # not W3C trace context, which is ASCII: ignored
        return None

    def keys(self, carrier: Mapping[str, object]) -> list[str]:
        """The header names."""
        return list(carrier)


HEADERS = _HeaderGetter()


def traceparent_of(span_context: SpanContext) -> str | None:
    """The W3C ``traceparent`` of a span context (version 00), or None when it is not valid."""
    if not span_context.is_valid:
        return None
    return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{span_context.trace_flags:02x}"


def tracestate_of(span_context: SpanContext) -> str | None:
    """The W3C ``tracestate`` of a valid span context, None when it is empty or the context invalid.

    Its entries were validated by the propagator as W3C allows (keys and printable ASCII values
    without ``,`` and ``=``, at most 32 entries), so it holds no control characters.
    """
    if not span_context.is_valid or not span_context.trace_state:
        return None
    return span_context.trace_state.to_header()


def stored_context(traceparent: str | None, tracestate: str | None) -> Context | None:
    """The context an event's stored ``traceparent``/``tracestate`` describe, None when there is none
    (or it does not parse, e.g. an imported body edited by hand)."""
    if traceparent is None:
        return None
    carrier = {"traceparent": traceparent}
    if tracestate is not None:
        carrier["tracestate"] = tracestate
    ctx = _W3C.extract(carrier)
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


class CommandTrace:
    """One command delivery's trace: its process span, and the context it passes on.

    ``span`` is the recording process span, or with the API only the incoming span (non-recording;
    ``INVALID_SPAN`` when the command carried no valid context). ``context`` holds it as current.
    """

    __slots__ = ("_headers", "_traceparent", "_tracer", "context", "recording", "span")

    def __init__(self, tracer: Tracer, span: Span, context: Context, recording: bool) -> None:
        self._tracer = tracer
        self.span = span
        self.context = context
        self.recording = recording
        self._headers: dict[str, str] | None = None
        self._traceparent: tuple[str | None, str | None] | None = None

    @property
    def span_context(self) -> SpanContext:
        """The context passed on: the process span's, or the incoming one (invalid when none)."""
        return self.span.get_span_context()

    def _w3c(self) -> tuple[str | None, str | None]:
        if self._traceparent is None:  # written once: the span's context does not change
            span_context = self.span.get_span_context()
            self._traceparent = (traceparent_of(span_context), tracestate_of(span_context))
        return self._traceparent

    @property
    def traceparent(self) -> str | None:
        """The W3C ``traceparent`` the command's events carry, None without a trace."""
        return self._w3c()[0]

    @property
    def tracestate(self) -> str | None:
        """The W3C ``tracestate`` the command's events carry, None when there is none."""
        return self._w3c()[1]

    def headers(self) -> dict[str, str]:
        """The reply's trace headers, as the global propagator writes them (``traceparent``,
        ``tracestate``; more with other ``OTEL_PROPAGATORS``); empty without a trace."""
        if self._headers is None:
            self._headers = {}
            if self.span.get_span_context().is_valid:
                propagate.inject(self._headers, context=self.context)
        return self._headers

    def active(self) -> "_Current":
        """A context manager that makes the command's span current (log lines written meanwhile
        carry its ids)."""
        return _Current(self.context)

    @contextlib.contextmanager
    def publishing_reply(self, reply_to: str, body_size: int, peer: Peer) -> Iterator[None]:
        """A PRODUCER span ``publish amq.default`` around the reply's publish, child of the process
        span; nothing when not recording. An exception is recorded (``error.type``) and raised."""
        if not self.recording:
            yield
            return
        attributes: dict[str, str | int] = {
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "publish",
            "messaging.operation.name": "publish",
            "messaging.destination.name": DEFAULT_EXCHANGE,
            "messaging.rabbitmq.destination.routing_key": reply_to,
            "messaging.message.body.size": body_size,
            **peer.attributes(),
        }
        span = self._tracer.start_span(
            f"publish {DEFAULT_EXCHANGE}", self.context, SpanKind.PRODUCER, attributes
        )
        try:
            yield
        except BaseException as exc:
            _failed(span, type(exc).__name__, str(exc))
            raise
        finally:
            span.end()

    def finish(self, *, command: str | None, status_code: int | None, error_type: str | None = None) -> None:
        """End the process span: the command's name, the reply's status code (None when requeued);
        a 5xx or an ``error_type`` (an exception's class, a reason) marks it an error."""
        if not self.recording:
            return
        span = self.span
        if command:
            span.set_attribute("outplan.command", command)
        if status_code is not None:
            span.set_attribute("outplan.reply.status_code", status_code)
            if status_code >= 500 and error_type is None:
                error_type = str(status_code)
        if error_type is not None:
            _failed(span, error_type)
        span.end()


class _Current:
    """Attaches a context on entry and detaches it on exit: a class, as it runs for every command
    (a generator-based context manager costs twice as much)."""

    __slots__ = ("_context", "_token")

    def __init__(self, context: Context) -> None:
        self._context = context

    def __enter__(self) -> None:
        self._token = otel_context.attach(self._context)

    def __exit__(self, *_: object) -> None:
        otel_context.detach(self._token)


def _failed(span: Span, error_type: str, description: str | None = None) -> None:
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, description))


class Tracing:
    """Starts the worker's spans with ``tracer``; ``recording`` False (the API only) skips their
    attributes and child spans. :func:`current` gives the one for the global provider."""

    __slots__ = ("recording", "tracer")

    def __init__(self, tracer: Tracer, *, recording: bool = True) -> None:
        self.tracer = tracer
        self.recording = recording

    def start_command(
        self,
        headers: Mapping[str, object],
        *,
        queue: str,
        exchange: str | None,
        routing_key: str | None,
        message_id: str | None,
        correlation_id: str | None,
        body_size: int,
        peer: Peer,
    ) -> CommandTrace:
        """The trace of a command delivery with these AMQP ``headers``: a CONSUMER span
        ``process <queue>`` under the incoming context when recording, else that context alone.
        A malformed ``traceparent`` is ignored (a new trace; with the API only, none). Never raises
        on header content."""
        incoming = propagate.extract(headers, getter=HEADERS)
        if not self.recording:
            return CommandTrace(self.tracer, trace.get_current_span(incoming), incoming, False)
        attributes: dict[str, str | int] = {
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": exchange or DEFAULT_EXCHANGE,
            "messaging.message.body.size": body_size,
            **peer.attributes(),
        }
        if routing_key:
            attributes["messaging.rabbitmq.destination.routing_key"] = routing_key
        if message_id:
            attributes["messaging.message.id"] = message_id
        if correlation_id:
            attributes["messaging.message.conversation_id"] = correlation_id
        span = self.tracer.start_span(f"process {queue}", incoming, SpanKind.CONSUMER, attributes)
        if not span.get_span_context().is_valid:  # a tracer that makes none: pass the incoming on
            return CommandTrace(self.tracer, trace.get_current_span(incoming), incoming, False)
        return CommandTrace(self.tracer, span, trace.set_span_in_context(span, incoming), span.is_recording())

    @contextlib.contextmanager
    def batch_write(self, commands: Sequence[CommandTrace], peer: Peer) -> Iterator[None]:
        """A CLIENT span ``BATCH <database>`` around one group-commit batch, current while it runs:
        linked to every command's span, child of the first's. Nothing when not recording. An
        exception is recorded (``error.type``: its class) and raised."""
        if not self.recording or not commands:
            yield
            return
        links = [Link(c.span_context) for c in commands if c.span_context.is_valid]
        attributes: dict[str, str | int] = {
            "db.system.name": "postgresql",
            "db.system": "postgresql",  # the attribute's name before semantic conventions 1.30
            "db.operation.name": "BATCH",
            **peer.attributes(),
        }
        if peer.namespace:
            attributes["db.namespace"] = peer.namespace
        if len(commands) > 1:  # the conventions: a batch size is never 1
            attributes["db.operation.batch.size"] = len(commands)
        name = f"BATCH {peer.namespace}" if peer.namespace else "BATCH"
        span = self.tracer.start_span(name, commands[0].context, SpanKind.CLIENT, attributes, links)
        token = otel_context.attach(trace.set_span_in_context(span, commands[0].context))
        try:
            yield
        except BaseException as exc:
            _failed(span, type(exc).__name__, str(exc))
            raise
        finally:
            otel_context.detach(token)
            span.end()

    def start_publish(
        self,
        *,
        exchange: str,
        routing_key: str,
        message_id: str,
        correlation_id: str | None,
        body_size: int,
        traceparent: str | None,
        tracestate: str | None,
        peer: Peer,
    ) -> "PublishTrace":
        """An event's publish: a PRODUCER span ``publish <exchange>`` when recording, child of the
        stored command context (``traceparent``, ``tracestate``) and linked to it; the AMQP trace
        headers of the message (that span's context, else the stored one unchanged)."""
        if not self.recording:
            headers: dict[str, str] = {}
            if traceparent is not None:
                headers["traceparent"] = traceparent
                if tracestate is not None:
                    headers["tracestate"] = tracestate
            return PublishTrace(None, headers)
        parent = stored_context(traceparent, tracestate)
        links = None if parent is None else [Link(trace.get_current_span(parent).get_span_context())]
        attributes: dict[str, str | int] = {
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "publish",
            "messaging.operation.name": "publish",
            "messaging.destination.name": exchange or DEFAULT_EXCHANGE,
            "messaging.rabbitmq.destination.routing_key": routing_key,
            "messaging.message.id": message_id,
            "messaging.message.body.size": body_size,
            **peer.attributes(),
        }
        if correlation_id:
            attributes["messaging.message.conversation_id"] = correlation_id
        span = self.tracer.start_span(
            f"publish {exchange or DEFAULT_EXCHANGE}",
            parent or Context(),  # an event without stored context: a trace of its own
            SpanKind.PRODUCER,
            attributes,
            links,
        )
        headers = {}
        propagate.inject(headers, context=trace.set_span_in_context(span, parent))
        return PublishTrace(span, headers)


class PublishTrace:
    """One event publish: its span (None when not recording) and the message's trace ``headers``."""

    __slots__ = ("headers", "span")

    def __init__(self, span: Span | None, headers: dict[str, str]) -> None:
        self.span = span
        self.headers = headers

    def end(self, error_type: str | None = None, description: str | None = None) -> None:
        """End the span; ``error_type`` (``nacked``, an exception's class) marks it an error."""
        if self.span is None:
            return
        if error_type is not None:
            _failed(self.span, error_type, description)
        self.span.end()


_current: tuple[object, Tracing] | None = None


def current() -> Tracing:
    """The ``Tracing`` of the global tracer provider: recording unless none is set (the API only,
    or ``OTEL_SDK_DISABLED``). Cheap: rebuilt only when the global provider changes."""
    global _current
    provider = trace.get_tracer_provider()
    if _current is None or _current[0] is not provider:
        recording = not isinstance(provider, ProxyTracerProvider | NoOpTracerProvider)
        _current = (provider, Tracing(provider.get_tracer(TRACER_NAME), recording=recording))
    return _current[1]
