"""Retries back off with jitter: workers that lost a server together do not come back in lockstep."""

import asyncio
import socket

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from worker.app import StoppedWhileStarting, open_pool
from worker.backoff import Backoff
from worker.settings import Settings

pytestmark = pytest.mark.unit


def test_delays_double_up_to_the_cap_each_drawn_between_half_and_all_of_it() -> None:
    backoff = Backoff(0.1, 2.0)
    nominal = [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]
    for _ in range(50):
        backoff.reset()
        for expected in nominal:
            assert expected / 2 - 0.001 <= backoff.next() <= expected + 0.001


def test_reset_starts_again_from_the_first_delay() -> None:
    backoff = Backoff(1.0, 8.0, uniform=lambda low, high: high)
    assert [backoff.next() for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    backoff.reset()
    assert backoff.next() == 1.0


def test_a_first_delay_above_the_cap_is_refused() -> None:
    with pytest.raises(ValueError):
        Backoff(5.0, 1.0)


async def test_workers_waiting_for_the_same_server_retry_at_different_times() -> None:
    """Ten workers started together against a database that is down: their retry delays differ."""
    with socket.socket() as unheard:  # a port of our own that nobody listens on: connecting is refused
        unheard.bind(("127.0.0.1", 0))
        url = f"postgresql://postgres@127.0.0.1:{unheard.getsockname()[1]}/outplans"
        settings = Settings(database_url=SecretStr(url))

        async def worker() -> None:
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(0.5, stop.set)
            with pytest.raises(StoppedWhileStarting):
                await open_pool(settings, stop)

        with capture_logs() as logs:
            await asyncio.gather(*(worker() for _ in range(10)))
    retries = [entry for entry in logs if entry["event"] == "database unreachable; retrying"]
    assert {entry["error"] for entry in retries} == {"ConnectionRefusedError"}
    # Each worker's first attempt is refused at once and logs its first delay before any delay
    # (at least 0.1 s) is over: the first ten lines are the ten workers' first retries.
    firsts = [entry["retry_in"] for entry in retries[:10]]
    assert len(firsts) == 10 and len(set(firsts)) > 5, firsts
    assert all(0.1 <= first <= 0.2 for first in firsts), firsts
