"""The health endpoint answers every request as HTTP says, and a check that breaks fails, loudly once."""

import asyncio
import json
import signal
from typing import Any, cast

import asyncpg
import pytest
from structlog.testing import capture_logs

from worker.observability.health import Health
from worker.observability.http import STOP_SECONDS, HealthServer

pytestmark = pytest.mark.unit


async def _ok() -> dict[str, object]:
    return {"loop_ok": True}


async def _broken() -> dict[str, object]:
    raise RuntimeError("a bug in a check")


async def _request(server: HealthServer, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(raw)
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 5)  # the server closes after its answer
    writer.close()
    assert response, "the connection was closed with no answer"
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    return int(status_line.split()[1]), headers, body


async def _server(ready: Any = _ok, live: Any = _ok) -> HealthServer:
    server = HealthServer("127.0.0.1", 0, ready, live)
    await server.start()
    return server


async def test_a_check_that_raises_answers_503_with_json_naming_the_error_logged_once() -> None:
    server = await _server(ready=_broken)
    try:
        with capture_logs() as logs:
            for _ in range(3):
                status, headers, body = await _request(server, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert status == 503
                assert headers["content-type"] == "application/json"
                assert json.loads(body) == {"checks_ok": False, "checks_error": "RuntimeError"}
        assert len([e for e in logs if e["log_level"] == "error"]) == 1, logs
        assert (await _request(server, b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"))[0] == 200
    finally:
        await server.close()


async def test_head_gets_the_headers_of_get_and_no_body() -> None:
    server = await _server()
    try:
        for path in (b"/livez", b"/readyz", b"/metrics"):
            got = await _request(server, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await _request(server, b"HEAD " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            assert head[0] == got[0] == 200
            assert head[2] == b"" and got[2] != b""
            assert head[1]["content-type"] == got[1]["content-type"]
            if path != b"/metrics":  # metrics change between two requests
                assert head[1]["content-length"] == got[1]["content-length"] == str(len(got[2]))
    finally:
        await server.close()


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"])
async def test_other_methods_get_405_with_allow(method: bytes) -> None:
    server = await _server()
    try:
        request = method + b" /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        status, headers, _ = await _request(server, request)
        assert status == 405 and headers["allow"] == "GET, HEAD"
    finally:
        await server.close()


async def test_unknown_paths_get_404_and_garbage_gets_400() -> None:
    server = await _server()
    try:
        assert (await _request(server, b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n"))[0] == 404
        assert (await _request(server, b"POST /nothing HTTP/1.1\r\nHost: x\r\n\r\n"))[0] == 404
        assert (await _request(server, b"GET /livez?verbose=1 HTTP/1.1\r\nHost: x\r\n\r\n"))[0] == 200
        assert (await _request(server, b"hello\r\n\r\n"))[0] == 400
        assert (await _request(server, b"GET /livez HTTP/1.1\r\n\r\n"))[0] == 400  # HTTP/1.1 needs Host
    finally:
        await server.close()


async def test_serving_leaves_the_signal_handlers_alone() -> None:
    """uvicorn would point SIGTERM and SIGINT at its own handler while it serves; the worker's stay."""
    handled = (signal.SIGTERM, signal.SIGINT)
    before = {signum: signal.getsignal(signum) for signum in handled}
    server = await _server()
    try:
        assert (await _request(server, b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"))[0] == 200
        assert {signum: signal.getsignal(signum) for signum in handled} == before
    finally:
        await server.close()
    assert {signum: signal.getsignal(signum) for signum in handled} == before


async def test_close_does_not_wait_long_for_a_probe_whose_check_hangs() -> None:
    async def stuck() -> dict[str, object]:
        await asyncio.Event().wait()
        return {}

    server = await _server(ready=stuck)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.2)  # the check is running
    loop = asyncio.get_running_loop()
    started = loop.time()
    await server.close()
    assert loop.time() - started < STOP_SECONDS + 0.5
    await asyncio.wait_for(reader.read(), 1)  # and the probe's connection is closed
    writer.close()


class _Pool:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    async def fetchrow(self, _query: str) -> dict[str, object]:
        if self.error is not None:
            raise self.error
        return {"n": 0, "age": None}


async def test_an_unexpected_database_error_fails_the_check_by_name_logged_once_until_it_passes() -> None:
    health = Health(max_outbox_age_seconds=30.0)
    pool = _Pool(RuntimeError("relation does not exist"))
    health.attach(cast(asyncpg.Pool, pool), None)
    with capture_logs() as logs:
        for _ in range(3):
            ready = await health.ready()
            assert ready["database_ok"] is False and ready["database_error"] == "RuntimeError"
        pool.error = None
        assert (await health.ready())["database_ok"] is True
    assert [e["event"] for e in logs] == [
        "readiness check failed unexpectedly; failing it until it passes",
        "readiness check passes again",
    ]


async def test_the_monitor_logs_and_survives_a_check_that_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    health = Health(max_outbox_age_seconds=30.0)
    monkeypatch.setattr(health, "MONITOR_SECONDS", 0.01, raising=False)
    calls = 0

    async def ready() -> dict[str, object]:
        nonlocal calls
        calls += 1
        raise ValueError("surprise")

    monkeypatch.setattr(health, "ready", ready)
    stop = asyncio.Event()
    with capture_logs() as logs:
        monitor = asyncio.create_task(health.monitor(stop))
        await asyncio.sleep(0.2)
        assert not monitor.done(), "the monitor died"
        stop.set()
        await asyncio.wait_for(monitor, 1)
    assert calls > 3
    assert len([e for e in logs if e["log_level"] == "error"]) == 1
