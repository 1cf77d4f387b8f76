"""Spans recorded in memory by the OpenTelemetry SDK, for unit tests of what is traced."""

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

_exporter: InMemorySpanExporter | None = None


def recorder() -> InMemorySpanExporter:
    """An exporter that every span of this process reaches, emptied: the global tracer provider can
    be set once per process, so the first call sets an SDK provider (or adds to one set before)."""
    global _exporter
    if _exporter is None:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            provider = TracerProvider()
            trace.set_tracer_provider(provider)
        _exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
    _exporter.clear()
    return _exporter


def remote_parent(trace_id: int, span_id: int, *, sampled: bool = True) -> NonRecordingSpan:
    """A span from another process, as a propagator would make it current."""
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags))
