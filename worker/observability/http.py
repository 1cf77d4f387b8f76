"""``/metrics``, ``/livez`` and ``/readyz``: a Starlette app served by uvicorn on the worker's event loop.

A library rather than a server of our own: the project's HTTP gateway is to be built on Starlette
served by uvicorn, so the worker's port uses the same two, and HTTP parsing is theirs, not ours.

What that costs, against the hand-written ``asyncio.start_server`` server it replaced, measured on
the project's machine (2 cores, shared with other work) by starting ``outplan-worker run`` 26 times
with each, alternating, and reading VmRSS in /proc when "worker started" appears in its log
(medians of two rounds, 11 and 15 starts): RSS 51.6 → 54.6 MiB (+3.0: uvicorn with click and h11,
and Starlette); start-up to "worker started" 0.71–0.73 → 0.95 s (+0.22–0.25 s, mostly imports);
SIGTERM to exit 0.07 → 0.27 s (uvicorn sees ``should_exit`` on its 0.1 s tick, then pauses 0.1 s
in its shutdown). While it serves, that tick costs an idle worker about 1 ms of CPU a second
(0.03 → 0.07 s of CPU in 30 s idle, medians of three). The other commands (``check``, ``migrate``,
``replay``, ``tail``) do not import this module.

What it answers (every response carries ``Connection: close``, so each connection ends after its
answer, as it did with the hand-written server):

- ``GET`` (or ``HEAD``: the same status and headers, no body) on ``/livez`` and ``/readyz``:
  200 with the checks as JSON when every ``*_ok`` check is true, 503 with them otherwise. A check
  function that raises answers 503 too, naming the error (``{"checks_ok": false, "checks_error":
  "<exception class>"}``), and the first such failure is logged (once, until it passes again).
- ``GET``/``HEAD`` on ``/metrics``: the Prometheus text format (500 naming the error if a
  collector breaks, logged the same way).
- Any other method on those paths: 405 with ``Allow: GET, HEAD``. Any other path: 404. A request
  h11 cannot read (not HTTP, or HTTP/1.1 without its mandatory ``Host`` header): 400, with
  uvicorn's text.

Kept from uvicorn: the signals (the worker's own SIGTERM and SIGINT handling drains on the first
and exits on the second; ``uvicorn.Server.serve`` would take both over in ``capture_signals``,
which :class:`SignalFreeServer` turns off); its log lines below ERROR (no start-up banner, no access log:
the worker's log stays its own JSON lines); and its graceful wait for open connections, which is
cut to a second so that a stuck probe cannot hold the worker's exit.
"""

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator

import structlog
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import LIVEZ, METRICS, READYZ
from .metrics import REGISTRY

ALLOWED = "GET, HEAD"
STOP_SECONDS = 2.0  # close() waits this long for uvicorn to stop before cancelling it

Check = Callable[[], Awaitable[dict[str, object]]]

log = structlog.get_logger("outplan_worker.health")

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


def passing(checks: dict[str, object]) -> bool:
    """True when every ``*_ok`` entry is true."""
    return all(bool(value) for key, value in checks.items() if key.endswith("_ok"))


class SignalFreeServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signal handling alone.

    ``Server.serve`` wraps serving in ``capture_signals()``, which points SIGINT and SIGTERM at
    uvicorn's own handler (so that a signal stops the server) and raises them again once it has
    stopped. The worker handles both itself and stops this server through ``should_exit``.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Take no signals: the process's own handlers stay in place, and stop the server."""
        yield


if not callable(getattr(uvicorn.Server, "capture_signals", None)):  # renamed: it would take the signals
    raise RuntimeError(f"uvicorn {uvicorn.__version__}: Server.capture_signals is gone; see SignalFreeServer")


class HealthServer:
    """``/livez`` answers while the loop runs; ``/readyz`` runs the readiness checks."""

    def __init__(self, host: str, port: int, ready: Check, live: Check) -> None:
        self._host, self._port = host, port
        self._ready, self._live = ready, live
        self._socket: socket.socket | None = None
        self._server: SignalFreeServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing: set[str] = set()  # paths whose checks raised, logged once until they pass

    @property
    def port(self) -> int:
        """The TCP port it listens on (the one the OS chose when asked for port 0); after ``start``."""
        assert self._socket is not None
        return int(self._socket.getsockname()[1])

    def app(self) -> Starlette:
        """The ASGI application: ``/livez``, ``/readyz`` and ``/metrics`` for GET and HEAD, 405 with
        ``Allow`` for other methods, 404 elsewhere (see the module docstring for the bodies)."""
        get = ["GET", "HEAD"]
        return Starlette(
            routes=[
                Route(LIVEZ, self._livez, methods=get),
                Route(READYZ, self._readyz, methods=get),
                Route(METRICS, self._metrics, methods=get),
            ],
            exception_handlers={404: _not_found, 405: _not_allowed},
        )

    async def start(self) -> None:
        """Listen (an ``OSError`` if the port cannot be had), then serve on a task of this loop."""
        config = uvicorn.Config(
            self.app(),
            http="h11",
            ws="none",
            lifespan="off",
            interface="asgi3",
            log_config=None,  # the worker's logging stays as logs.configure() set it
            log_level=max(logging.ERROR, logging.getLogger().getEffectiveLevel()),
            access_log=False,
            server_header=False,
            date_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=1,
        )
        config.load()  # here, so that a configuration uvicorn refuses fails start()
        # The socket is bound here rather than by uvicorn, which logs a failed bind and calls
        # sys.exit(); listening from here on, connections wait in the backlog until it serves.
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        self._socket = socket.create_server((self._host, self._port), family=family)
        self._server = SignalFreeServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]), name="health-server")

    async def close(self) -> None:
        """Stop serving: a probe still running gets up to 1 s, then the task is cancelled (within
        ``STOP_SECONDS`` in all). Does nothing when it never started."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True  # seen within uvicorn's 0.1 s tick
        done, _ = await asyncio.wait({self._task}, timeout=STOP_SECONDS)
        if not done:
            self._task.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await self._task

    async def _livez(self, _request: Request) -> Response:
        return await self._checks(LIVEZ, self._live)

    async def _readyz(self, _request: Request) -> Response:
        return await self._checks(READYZ, self._ready)

    async def _checks(self, path: str, check: Check) -> Response:
        try:
            checks = await check()
        except Exception as exc:  # noqa: BLE001  (a check that raises fails; the probe still gets an answer)
            self._report(path, exc)
            checks = {"checks_ok": False, "checks_error": type(exc).__name__}
        else:
            self._passed(path)
        data = json.dumps(checks, default=str).encode()
        return _response(200 if passing(checks) else 503, data, JSON)

    async def _metrics(self, _request: Request) -> Response:
        try:
            data = generate_latest(REGISTRY)
        except Exception as exc:  # noqa: BLE001  (a collector broke: say so, do not drop the connection)
            self._report(METRICS, exc)
            return _response(500, f"metrics failed: {type(exc).__name__}\n".encode(), TEXT)
        self._passed(METRICS)
        return _response(200, data, CONTENT_TYPE_LATEST)

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


def _response(status: int, body: bytes, content_type: str, **headers: str) -> Response:
    # The content type is given as a header, not as media_type, so that Starlette adds no charset
    # of its own; Content-Length (that of the GET body, for HEAD too) comes from Starlette.
    return Response(body, status, headers={"Content-Type": content_type, "Connection": "close", **headers})


async def _not_found(_request: Request, _exc: Exception) -> Response:
    return _response(404, b"not found\n", TEXT)


async def _not_allowed(_request: Request, _exc: Exception) -> Response:
    return _response(405, b"method not allowed\n", TEXT, Allow=ALLOWED)
