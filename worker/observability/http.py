"""A small HTTP server for ``/metrics``, ``/livez`` and ``/readyz`` on the worker's event loop.

Hand-written on ``asyncio.start_server`` rather than a web framework: it serves three paths to
probes and scrapers, reads no request bodies and closes each connection after its answer, and a
framework would cost more than it saves (aiohttp.web adds about 11 MB of RSS and 0.4 s to
start-up; uvicorn with Starlette about 4 MB and 0.2 s, and takes over SIGTERM while it serves).

What it answers:

- ``GET`` (or ``HEAD``: the same status and headers, no body) on ``/livez`` and ``/readyz``:
  200 with the checks as JSON when every ``*_ok`` check is true, 503 with them otherwise. A check
  function that raises answers 503 too, naming the error (``{"checks_ok": false, "checks_error":
  "<exception class>"}``), and the first such failure is logged (once, until it passes again).
- ``GET``/``HEAD`` on ``/metrics``: the Prometheus text format.
- Any other method on those paths: 405 with ``Allow: GET, HEAD``. Any other path: 404. A request
  line that cannot be read: 400.
"""

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .metrics import REGISTRY

LIVEZ = "/livez"
READYZ = "/readyz"
METRICS = "/metrics"
PATHS = (LIVEZ, READYZ, METRICS)
ALLOWED = "GET, HEAD"
READ_SECONDS = 5.0  # a client gets this long to send its request line and headers

Check = Callable[[], Awaitable[dict[str, object]]]

log = structlog.get_logger("outplan_worker.health")

REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


def passing(checks: dict[str, object]) -> bool:
    """True when every ``*_ok`` entry is true."""
    return all(bool(value) for key, value in checks.items() if key.endswith("_ok"))


class HealthServer:
    """``/livez`` answers while the loop runs; ``/readyz`` runs the readiness checks."""

    def __init__(self, host: str, port: int, ready: Check, live: Check) -> None:
        self._host, self._port = host, port
        self._ready, self._live = ready, live
        self._server: asyncio.Server | None = None
        self._failing: set[str] = set()  # paths whose checks raised, logged once until they pass

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_SECONDS)
            method, path = _request_line(head)
            status, headers, body = await self._answer(method, path)
            if method == "HEAD":
                body = b""  # the headers (Content-Length included) are those GET would get
            lines = [
                f"HTTP/1.1 {status} {REASONS[status]}",
                *(f"{k}: {v}" for k, v in headers.items()),
                "Connection: close",
                "",
                "",
            ]
            writer.write("\r\n".join(lines).encode() + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass  # the client went away, or sent too much or too slowly: nothing to answer
        finally:
            writer.close()

    async def _answer(self, method: str | None, path: str) -> tuple[int, dict[str, str], bytes]:
        if method is None:
            return _plain(400, "bad request\n")
        if path not in PATHS:
            return _plain(404, "not found\n")
        if method not in ("GET", "HEAD"):
            status, headers, body = _plain(405, "method not allowed\n")
            return status, {**headers, "Allow": ALLOWED}, body
        if path == METRICS:
            try:
                data = generate_latest(REGISTRY)
            except Exception as exc:  # noqa: BLE001  (a collector broke: say so, do not drop the connection)
                self._report(path, exc)
                return _plain(500, f"metrics failed: {type(exc).__name__}\n")
            self._passed(path)
            return 200, {"Content-Type": CONTENT_TYPE_LATEST, "Content-Length": str(len(data))}, data
        try:
            checks = await (self._live if path == LIVEZ else self._ready)()
        except Exception as exc:  # noqa: BLE001  (a check that raises fails; the probe still gets an answer)
            self._report(path, exc)
            checks = {"checks_ok": False, "checks_error": type(exc).__name__}
        else:
            self._passed(path)
        data = json.dumps(checks, default=str).encode()
        headers = {"Content-Type": JSON, "Content-Length": str(len(data))}
        return (200 if passing(checks) else 503), headers, data

    def _report(self, path: str, exc: Exception) -> None:
        if path not in self._failing:
            self._failing.add(path)
            log.error(
                "health endpoint failed unexpectedly; answering with the error until it passes",
                path=path,
                error=type(exc).__name__,
                detail=str(exc)[:200],
                exc_info=exc,
            )

    def _passed(self, path: str) -> None:
        if path in self._failing:
            self._failing.discard(path)
            log.info("health endpoint answers again", path=path)


def _request_line(head: bytes) -> tuple[str | None, str]:
    """The method and the path (without its query) of a request; ``None`` when unreadable."""
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/") or not parts[0].isalpha():
        return None, ""
    return parts[0].decode("ascii"), parts[1].decode(errors="replace").split("?", 1)[0]


def _plain(status: int, text: str) -> tuple[int, dict[str, str], bytes]:
    data = text.encode()
    return status, {"Content-Type": TEXT, "Content-Length": str(len(data))}, data
