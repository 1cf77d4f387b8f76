"""The gateway's Starlette application and its lifespan: the broker connection, then the HTTP server.

On one port (``OUTPLAN_GATEWAY_PORT``, 8080 by default, beside the worker's 9464): the six calls
of the tutorial under ``/v1.0``, ``/openapi.json``, ``/livez`` (200 while the loop runs),
``/readyz`` (200 while the broker connection is up, else 503; the JSON says which) and
``/metrics`` (Prometheus text, the gateway's own registry). Other paths are 404 and other methods
405, as JSON ``ErrorInfo`` bodies like every refusal. Connections are kept alive (HTTP/1.1).

SIGTERM or SIGINT: stop accepting connections, let requests in flight finish (up to the reply
timeout and a second), close the broker connection, exit 0. A second signal exits at once (1).
"""

import asyncio
import logging
import math
import socket
import time
from typing import Any

import orjson
import structlog
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..observability import LIVEZ, METRICS, READYZ
from ..observability.http import SignalFreeServer
from . import errors, metrics, openapi
from .auth import Verifier
from .broker import Broker
from .routes import CALLS, Gateway, amqp_headers
from .settings import GatewaySettings

OPENAPI = "/openapi.json"
OTHER_ROUTE = "other"  # the route label of requests that match no route

log = structlog.get_logger("outplan_worker.gateway")


def application(verifier: Verifier, broker: Broker, headers: Any = amqp_headers) -> Starlette:
    """The ASGI application: the calls of ``routes.CALLS`` plus ``/openapi.json``, ``/livez``,
    ``/readyz`` and ``/metrics``; ``headers`` builds each command's AMQP headers."""
    gateway = Gateway(verifier, broker, headers)
    document = orjson.dumps(openapi.document())
    by_path: dict[str, list[Route]] = {}
    routes: list[Route] = []
    for call in CALLS:
        by_path.setdefault(call.path, [])
    # One Route per path carrying each of its methods, so that another method is a 405, not a 404.
    for path in by_path:
        endpoints = {call.method: gateway.endpoint(call) for call in CALLS if call.path == path}
        routes.append(Route(path, _dispatch(endpoints), methods=list(endpoints)))

    async def openapi_json(_request: Request) -> Response:
        return _counted(OPENAPI, "GET", errors.json_response(200, document))

    async def livez(_request: Request) -> Response:
        return _counted(LIVEZ, "GET", errors.json_response(200, b'{"loop_ok":true}'))

    async def readyz(_request: Request) -> Response:
        ready = broker.connected
        body = orjson.dumps({"broker_ok": ready})
        return _counted(READYZ, "GET", errors.json_response(200 if ready else 503, body))

    async def metrics_text(_request: Request) -> Response:
        return Response(generate_latest(metrics.REGISTRY), 200, headers={"Content-Type": CONTENT_TYPE_LATEST})

    get = ["GET", "HEAD"]
    routes += [
        Route(OPENAPI, openapi_json, methods=get),
        Route(LIVEZ, livez, methods=get),
        Route(READYZ, readyz, methods=get),
        Route(METRICS, metrics_text, methods=get),
    ]
    return Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_allowed})


def _dispatch(endpoints: dict[str, Any]) -> Any:
    async def by_method(request: Request) -> Response:
        # HEAD is answered as GET is (Starlette adds it to every GET route); the server sends no body.
        endpoint = endpoints["GET"] if request.method == "HEAD" else endpoints[request.method]
        response: Response = await endpoint(request)
        return response

    return by_method


def _counted(route: str, method: str, response: Response) -> Response:
    metrics.REQUESTS.labels(route, method, str(response.status_code)).inc()
    return response


async def _not_found(request: Request, _exc: Exception) -> Response:
    return _counted(
        OTHER_ROUTE,
        request.method,
        errors.error_response(
            404,
            errors.ROUTE_NOT_FOUND,
            f"no such path: {request.url.path}; the calls are under /v1.0/outplans (see /openapi.json)",
        ),
    )


async def _not_allowed(request: Request, _exc: Exception) -> Response:
    allowed = sorted({c.method for c in CALLS if _matches(c.path, request.url.path)}) or ["GET", "HEAD"]
    return _counted(
        OTHER_ROUTE,
        request.method,
        errors.error_response(
            405,
            errors.METHOD_NOT_ALLOWED,
            f"{request.method} is not a call on {request.url.path}; it takes " + ", ".join(allowed),
            headers={"Allow": ", ".join(allowed)},
        ),
    )


def _matches(template: str, path: str) -> bool:
    parts, given = template.strip("/").split("/"), path.strip("/").split("/")
    return len(parts) == len(given) and all(
        p == g or p.startswith("{") for p, g in zip(parts, given, strict=True)
    )


async def serve(settings: GatewaySettings, verifier: Verifier, stop: asyncio.Event) -> None:
    """Run the gateway until ``stop`` is set: the broker connection kept up in the background (the
    HTTP port answers meanwhile; calls get 503 until it is up), the server on
    ``gateway_host:gateway_port``. Raises ``OSError`` when the port cannot be had, and
    ``app.Misconfigured`` when the broker refuses the login."""
    broker = Broker(
        settings.amqp_urls,
        exchange=settings.command_exchange,
        timeout=settings.gateway_timeout_seconds,
    )
    broker_stop = asyncio.Event()
    connecting = asyncio.create_task(broker.run(broker_stop), name="gateway-broker")
    config = uvicorn.Config(
        application(verifier, broker),
        http="auto",
        ws="none",
        lifespan="off",
        log_config=None,
        log_level=max(logging.ERROR, logging.getLogger().getEffectiveLevel()),
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=math.ceil(settings.gateway_timeout_seconds) + 1,
    )
    config.load()
    family = socket.AF_INET6 if ":" in settings.gateway_host else socket.AF_INET
    listening = socket.create_server((settings.gateway_host, settings.gateway_port), family=family)
    # Accepted connections inherit it (Linux). asyncio's own event loop sets it only on sockets whose
    # proto is IPPROTO_TCP, which create_server's is not: without it, a response written in two parts
    # (headers, then body) waits for the client's delayed ACK, 40 ms, on every keep-alive request.
    listening.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    server = SignalFreeServer(config)
    serving = asyncio.create_task(server.serve(sockets=[listening]), name="gateway-http")
    log.info(
        "gateway started",
        port=listening.getsockname()[1],
        algorithms=verifier.algorithms,
        customer_claim=verifier.claim,
    )
    stopping = asyncio.create_task(stop.wait())
    # Until a stop, or until either task ends by itself (the broker refusing the login, say).
    await asyncio.wait({stopping, connecting, serving}, return_when=asyncio.FIRST_COMPLETED)
    started = time.monotonic()
    server.should_exit = True  # no new connections; requests in flight finish first
    try:
        await serving
    finally:
        broker_stop.set()
        stopping.cancel()
        try:
            await connecting
        finally:
            listening.close()
            log.info("gateway stopped", seconds=round(time.monotonic() - started, 3))
