"""Metrics, health endpoints and the readiness checks behind them."""

# The endpoints' paths live here rather than in .http, so that `outplan-worker check` (and anything
# else that only needs the paths) does not import the HTTP server, uvicorn and Starlette with it.
LIVEZ = "/livez"
READYZ = "/readyz"
METRICS = "/metrics"
