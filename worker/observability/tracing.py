"""Setting up the OpenTelemetry SDK from the standard ``OTEL_*`` variables, once at start.

The worker depends on ``opentelemetry-api`` only. With the SDK and the OTLP/HTTP exporter
installed (``outplan-worker[otel]``), :func:`configure_tracing` builds the tracer provider itself,
so no ``opentelemetry-instrument`` wrapper is needed:

- ``OTEL_SDK_DISABLED=true``: nothing is set up (the API alone, as without the SDK).
- ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``: the resource (``service.name`` defaults to
  ``outplan-worker`` rather than the SDK's ``unknown_service``).
- ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``: read by the SDK's ``TracerProvider``.
- ``OTEL_TRACES_EXPORTER``: a comma list of ``otlp`` (the default), ``console`` and ``none``.
  ``none`` alone sets nothing up, as ``OTEL_SDK_DISABLED=true`` does: spans nobody exports are
  not recorded, since recording them costs CPU on every command for nothing.
- ``OTEL_EXPORTER_OTLP_PROTOCOL`` (or ``..._TRACES_PROTOCOL``): ``http/protobuf`` (the default);
  ``grpc`` is refused, its exporter not being installed. ``OTEL_EXPORTER_OTLP_ENDPOINT``,
  ``..._HEADERS``, ``..._TIMEOUT`` are read by the exporter; ``OTEL_BSP_*`` by the batch span processor.

Names and meanings are the SDK configuration specification's
(https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/).
"""

import importlib.util
import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import structlog
from opentelemetry import trace

if TYPE_CHECKING:  # the SDK is optional: imported where it is used
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

log = structlog.get_logger("outplan_worker")

DEFAULT_SERVICE_NAME = "outplan-worker"
EXPORTERS = ("otlp", "console", "none")
SHUTDOWN_SECONDS = 5.0  # at most this long at stop for the spans still buffered (a collector may be away)


class TracingMisconfigured(ValueError):
    """An ``OTEL_*`` variable the worker cannot follow; the message names it and says what to do."""


def _nothing() -> None:
    """The shutdown of a worker that set nothing up."""


def sdk_installed() -> bool:
    """Whether ``opentelemetry-sdk`` can be imported (the ``otel`` extra is installed)."""
    return importlib.util.find_spec("opentelemetry.sdk") is not None


def exporter_names(environ: Mapping[str, str]) -> list[str]:
    """``OTEL_TRACES_EXPORTER`` as a list (``["otlp"]`` when unset); ``none`` alone means none.

    :raises TracingMisconfigured: a name other than ``otlp``, ``console`` or ``none``.
    """
    raw = environ.get("OTEL_TRACES_EXPORTER", "").strip() or "otlp"
    names = [name.strip().lower() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in EXPORTERS]
    if unknown:
        raise TracingMisconfigured(
            f"OTEL_TRACES_EXPORTER={raw!r}: {', '.join(unknown)} is not an exporter this worker has;"
            f" use a comma list of {', '.join(EXPORTERS)}"
        )
    return [name for name in names if name != "none"]


def otlp_protocol(environ: Mapping[str, str]) -> str:
    """The OTLP protocol for traces: ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``, else
    ``OTEL_EXPORTER_OTLP_PROTOCOL``, else ``http/protobuf``.

    :raises TracingMisconfigured: ``grpc`` (its exporter is not installed) or an unknown protocol.
    """
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = environ.get(variable, "").strip()
        if value:
            break
    else:
        return "http/protobuf"
    if value == "http/protobuf":
        return value
    if value == "grpc":
        raise TracingMisconfigured(
            f"{variable}=grpc: the worker exports over OTLP/HTTP only (the gRPC exporter is not"
            " installed); set it to http/protobuf and point OTEL_EXPORTER_OTLP_ENDPOINT at the"
            " collector's HTTP port (4318)"
        )
    raise TracingMisconfigured(f"{variable}={value!r}: the worker exports with http/protobuf only")


def configure_tracing() -> Callable[[], None]:
    """Set the global tracer provider from the ``OTEL_*`` environment variables when the SDK is
    installed, ``OTEL_SDK_DISABLED`` is not ``true`` and ``OTEL_TRACES_EXPORTER`` names an exporter
    (not ``none`` alone); returns the function that flushes and shuts
    it down (call it once, when the worker stops). Without the SDK, or disabled, nothing is set and
    the returned function does nothing: the worker then passes trace context through, recording none.
    The shutdown waits at most ``SHUTDOWN_SECONDS`` (5 s) for the spans still buffered to be exported.
    A provider set up before (by ``opentelemetry-instrument``, say) is left as it is, and used.

    :raises TracingMisconfigured: an exporter or protocol the worker cannot use (see the module).
    """
    environ = os.environ
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true" or not sdk_installed():
        return _nothing
    names = exporter_names(environ)
    if "otlp" in names:  # settings that cannot work stop the start, in any case
        otlp_protocol(environ)
    if not names:
        return _nothing  # OTEL_TRACES_EXPORTER=none: nothing would see the spans; record none
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return _nothing  # set up already (e.g. by opentelemetry-instrument): that one is used
    provider = build_provider()
    trace.set_tracer_provider(provider)

    def shutdown() -> None:
        # In a thread of its own: an exporter retrying an unreachable collector (with backoff, for
        # up to its timeout) must not hold up the worker's exit.
        flushing = threading.Thread(target=provider.shutdown, name="tracing-shutdown", daemon=True)
        flushing.start()
        flushing.join(SHUTDOWN_SECONDS)
        if flushing.is_alive():
            log.warning("spans not exported before the exit", waited_seconds=SHUTDOWN_SECONDS)

    return shutdown


def build_provider() -> "SdkTracerProvider":
    """The SDK tracer provider ``configure_tracing`` sets, from the environment: resource, sampler,
    one batch span processor per exporter named in ``OTEL_TRACES_EXPORTER``. Needs the SDK.

    :raises TracingMisconfigured: see :func:`exporter_names` and :func:`otlp_protocol`.
    """
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    environ = os.environ  # the SDK's own parts (resource, sampler, exporter, processor) read it too
    names = exporter_names(environ)
    exporters: list[SpanExporter] = []
    for name in names:
        if name == "console":
            exporters.append(ConsoleSpanExporter(out=sys.stdout))  # the stdout of now, not of import
        else:  # otlp
            otlp_protocol(environ)
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            except ImportError as exc:
                raise TracingMisconfigured(
                    "OTEL_TRACES_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http: install"
                    " outplan-worker[otel], or set OTEL_TRACES_EXPORTER=console or none"
                ) from exc
            exporters.append(OTLPSpanExporter())
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override the default name (Resource.create reads them).
    named = "OTEL_SERVICE_NAME" in environ or "service.name=" in environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    resource = Resource.create({} if named else {SERVICE_NAME: DEFAULT_SERVICE_NAME})
    # The sampler from OTEL_TRACES_SAMPLER(_ARG). The worker shuts it down itself, with a bound
    # (configure_tracing), rather than at interpreter exit without one.
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))  # OTEL_BSP_* read here
    return provider
