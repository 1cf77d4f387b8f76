"""The gateway's Prometheus metrics, in a registry of its own (the worker's stay out of it).

``outplan_gateway_requests_total{route,method,status}``: requests answered, by route template
(``/v1.0/outplans/{id}``; ``other`` for paths that are not routes, so that the label stays
bounded), method and HTTP status. ``outplan_gateway_request_duration_seconds{route,method}``: from
the request's arrival to the answer, in seconds. ``outplan_gateway_broker_connected``: 1 while
the broker connection is up; ``outplan_gateway_broker_reconnects_total``: connections
re-established after a loss. Plus the standard process and Python collectors.
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
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

REQUESTS = Counter(
    "outplan_gateway_requests",
    "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "outplan_gateway_request_duration_seconds",
    "Time from a request's arrival to its answer",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
BROKER_CONNECTED = Gauge(
    "outplan_gateway_broker_connected", "1 while the gateway's broker connection is up", registry=REGISTRY
)
RECONNECTS = Counter(
    "outplan_gateway_broker_reconnects",
    "Broker connections re-established after a loss",
    registry=REGISTRY,
)
