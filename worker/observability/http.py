"""A small HTTP server for ``/metrics``, ``/livez`` and ``/readyz`` on the worker's event loop."""

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .metrics import REGISTRY

LIVEZ = "/livez"
READYZ = "/readyz"
METRICS = "/metrics"

Check = Callable[[], Awaitable[dict[str, object]]]


class HealthServer:
    """``/livez`` answers while the loop runs; ``/readyz`` runs the readiness checks."""

    def __init__(self, host: str, port: int, ready: Check, live: Check) -> None:
        self._host, self._port = host, port
        self._ready, self._live = ready, live
        self._server: asyncio.Server | None = None

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
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            path = request.split(b" ", 2)[1].decode(errors="replace").split("?", 1)[0]
            if path == METRICS:
                status, ctype, body = 200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY)
            elif path in (LIVEZ, READYZ):
                checks = await (self._live if path == LIVEZ else self._ready)()
                ok = all(bool(v) is True for k, v in checks.items() if k.endswith("_ok"))
                status, ctype, body = (200 if ok else 503), "application/json", json.dumps(checks).encode()
            else:
                status, ctype, body = 404, "text/plain", b"not found\n"
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                         "Connection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()
