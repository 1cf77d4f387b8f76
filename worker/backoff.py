"""Exponential backoff with jitter: the one way a loop in the worker waits before trying again.

Jitter keeps workers that lost the same server at the same moment (a broker restart, a fail-over)
from coming back in lockstep: each delay is drawn between half and all of the nominal one
("equal jitter"), so processes spread out from the first retry on while none retries in a hot loop.
"""

import asyncio
import contextlib
import random
from collections.abc import Callable


class Backoff:
    """Delays in seconds: ``first``, doubling up to ``most``, each drawn from [nominal / 2, nominal].

    ``next()`` gives the delay to wait now and doubles the nominal one; ``reset()`` starts again from
    ``first`` (after a success). ``wait()`` sleeps that delay, ending early when ``stop`` is set.
    """

    def __init__(
        self, first: float, most: float, *, uniform: Callable[[float, float], float] = random.uniform
    ) -> None:
        if not 0 < first <= most:
            raise ValueError(f"need 0 < first <= most, got first={first}, most={most}")
        self.first, self.most = first, most
        self._nominal = first
        self._uniform = uniform

    def next(self) -> float:
        nominal = self._nominal
        self._nominal = min(nominal * 2, self.most)
        return round(self._uniform(nominal / 2, nominal), 3)

    def reset(self) -> None:
        self._nominal = self.first

    async def wait(self, stop: asyncio.Event | None = None) -> float:
        """Sleep the next delay (s), or until ``stop`` is set; returns the delay drawn."""
        delay = self.next()
        await sleep_unless(delay, stop)
        return delay


async def sleep_unless(seconds: float, stop: asyncio.Event | None) -> None:
    """Sleep ``seconds``, or less when ``stop`` is set meanwhile."""
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
