"""structlog for everything: JSON lines off a terminal, colour on one; stdlib logs included.

Off a terminal the worker's own loggers render and write JSON directly; the standard library's
records (aio-pika, aiormq, asyncpg) go through a handler with the same processors, to the same
stream, one line per write.
"""

import logging
import sys

import aiormq.exceptions
import orjson
import structlog
from opentelemetry import trace


def add_trace_ids(_: object, __: str, event_dict: structlog.typing.EventDict) -> structlog.typing.EventDict:
    """``trace_id`` and ``span_id`` (lowercase hex, 32 and 16 digits, as OpenTelemetry writes them)
    of the span current when the line is written, when there is a valid one: a recording span, or
    with the OpenTelemetry API alone the context a command came with (its caller's span id)."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event_dict["trace_id"] = f"{span_context.trace_id:032x}"
        event_dict["span_id"] = f"{span_context.span_id:016x}"
    return event_dict


_SHARED: list[structlog.typing.Processor] = [
    structlog.contextvars.merge_contextvars,
    add_trace_ids,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def _dumps(value: object, **_: object) -> str:
    return orjson.dumps(value, default=str).decode()


class _NamedBytesLogger(structlog.BytesLogger):
    """Writes rendered lines straight to stderr, and knows its name for ``add_logger_name``."""

    def __init__(self, name: str) -> None:
        super().__init__(sys.stderr.buffer)
        self.name = name


def _named(*args: object) -> _NamedBytesLogger:
    return _NamedBytesLogger(str(args[0]) if args else "")


def _dump_bytes(_: object, __: str, event_dict: structlog.typing.EventDict) -> bytes:
    return orjson.dumps(event_dict, default=str)


class ReconnectNoise(logging.Filter):
    """Drops what aiormq and aio-pika log about an ordinary lost connection, as errors and tracebacks.

    A connection closed by the broker (a restart, a forced close, a network blip) makes them log
    an ERROR ("Unexpected connection close"), a WARNING with the reader's traceback, and an
    ERROR for each robust channel's close callback. The worker says it once instead, as one
    warning naming the connection ("broker connection lost; reconnecting", ``worker.app``), and
    counts the reconnect. aiormq's ERROR for a connection that could not be opened ("error when
    creating transport") goes too: the caller logs a retry, or why it cannot work (a TLS
    certificate refused, say) in one line. Records of any other kind pass, and at DEBUG everything passes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the records described above, unless the root logger is at DEBUG; else True."""
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            return True
        message = record.msg if isinstance(record.msg, str) else ""
        if message.startswith("Unexpected connection close from remote"):
            return False
        if message.startswith("error when creating transport"):
            return False  # the caller says it: a retry warning, or why it cannot work (a certificate)
        if message == "Cancelling cause reader exited abnormally" and record.exc_info:
            return not isinstance(record.exc_info[1], aiormq.exceptions.AMQPConnectionError)
        if message.startswith("Callback %r error") and isinstance(record.args, tuple) and record.args:
            return "RobustChannel._on_close" not in repr(record.args[0])
        return True


def configure(level: str = "INFO", *, json: bool | None = None) -> None:
    """Set up structlog and the root logger, once at start.

    ``level``: DEBUG, INFO, WARNING, ERROR or CRITICAL, any case (another name raises);
    ``json``: JSON lines or coloured text, by default JSON unless stderr is a terminal. aio-pika
    and aiormq log at WARNING at the least, without their reconnect noise (``ReconnectNoise``).
    """
    if json is None:
        json = not sys.stderr.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(serializer=_dumps) if json else structlog.dev.ConsoleRenderer()
    )
    wrapper = structlog.make_filtering_bound_logger(logging.getLevelName(level.upper()))
    if json:
        # The worker's own lines skip the standard library's logging machinery: a line per
        # command is written at full speed, and at a third of the cost.
        structlog.configure(
            processors=[*_SHARED, structlog.processors.format_exc_info, _dump_bytes],
            logger_factory=_named,
            wrapper_class=wrapper,
            cache_logger_on_first_use=True,
        )
    else:
        structlog.configure(
            processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=wrapper,
            cache_logger_on_first_use=True,
        )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_SHARED,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info if json else structlog.processors.StackInfoRenderer(),
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The AMQP libraries are chatty at INFO about every reconnect attempt detail.
    for name in ("aio_pika", "aiormq"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    handler.addFilter(ReconnectNoise())
