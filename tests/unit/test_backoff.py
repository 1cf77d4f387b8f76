"""Retries back off with jitter: workers that lost a server together do not come back in lockstep."""

import asyncio
from typing import Any

import pytest
from structlog.testing import capture_logs

from worker.app import StoppedWhileStarting, _keep_trying
from worker.backoff import Backoff

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
    """Ten workers started together against a broker that is down: their retry delays differ."""

    async def refused() -> None:
        raise ConnectionRefusedError

    async def worker(name: str) -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.5, stop.set)
        with pytest.raises(StoppedWhileStarting):
            await _keep_trying(name, refused, stop)

    names = [f"broker {n}" for n in range(10)]
    with capture_logs() as logs:
        await asyncio.gather(*(worker(name) for name in names))
    first_delay: dict[str, Any] = {}  # each event's first retry_in (None for other events)
    for entry in logs:
        first_delay.setdefault(entry["event"], entry.get("retry_in"))
    firsts = [first_delay[f"{name} unreachable; retrying"] for name in names]
    assert len(set(firsts)) > 5, firsts
    assert all(0.1 <= first <= 0.2 for first in firsts), firsts
