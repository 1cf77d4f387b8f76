"""Prometheus metrics of the worker (one registry, so tests and processes stay apart).

Besides the worker's own metrics, the registry carries the standard process, platform and
garbage-collector collectors: ``process_resident_memory_bytes``, ``process_cpu_seconds_total``,
``process_open_fds`` (and ``process_max_fds``, ``process_start_time_seconds``), ``python_info``
and ``python_gc_*`` (objects collected, uncollectable, collections by generation).
"""

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # RSS, CPU seconds, open file descriptors (from /proc; empty elsewhere)
PlatformCollector(registry=REGISTRY)  # python_info
GCCollector(registry=REGISTRY)  # python_gc_objects_collected_total and friends

COMMANDS = Counter(
    "outplan_commands", "Commands handled, by name and outcome", ["command", "outcome"], registry=REGISTRY
)
HANDLING = Histogram(
    "outplan_command_duration_seconds",
    "Time from delivery to settlement",
    ["command"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
EVENTS_PUBLISHED = Counter(
    "outplan_events_published", "Events confirmed by the broker, by type", ["type"], registry=REGISTRY
)
OUTBOX_BACKLOG = Gauge("outplan_outbox_backlog", "Events committed but not yet published", registry=REGISTRY)
OUTBOX_OLDEST_AGE = Gauge(
    "outplan_outbox_oldest_age_seconds", "Age of the oldest unpublished event", registry=REGISTRY
)
DEAD_LETTERED = Counter(
    "outplan_dead_lettered", "Messages dead-lettered by the worker, by reason", ["reason"], registry=REGISTRY
)
WRITE_CONFLICTS = Counter(
    "outplan_write_conflicts",
    "Batches written again because another writer changed one of their outplans or message ids first",
    registry=REGISTRY,
)
RECONNECTS = Counter("outplan_reconnects", "Connections re-established, by peer", ["peer"], registry=REGISTRY)
CONSUMER_ATTACHED = Gauge(
    "outplan_consumer_attached", "1 while the command consumer is attached", registry=REGISTRY
)
RELAY_LEADER = Gauge(
    "outplan_relay_leader", "1 while this process's relay holds the publishing lock", registry=REGISTRY
)
REPLIES_FAILED = Counter(
    "outplan_replies_failed",
    "Replies not published (nacked, unencodable, interrupted); the command's outcome stands",
    ["reason"],
    registry=REGISTRY,
)
DEAD_LETTERS_FAILED = Counter(
    "outplan_dead_letters_failed",
    "Dead-letter copies not published (nacked, unencodable, interrupted)",
    ["reason"],
    registry=REGISTRY,
)
EVENTS_UNROUTED = Counter(
    "outplan_events_unrouted",
    "Events no binding of the events exchange matched, by type",
    ["type"],
    registry=REGISTRY,
)
EVENTS_REFUSED = Counter(
    "outplan_events_refused",
    "Publishes of events the broker refused (basic.nack), by type",
    ["type"],
    registry=REGISTRY,
)
EVENTS_GIVEN_UP = Counter(
    "outplan_events_given_up",
    "Events left to replay, by type: refused after their re-publishes, or while refusals were ongoing",
    ["type"],
    registry=REGISTRY,
)
