"""How the worker's loops try again: one retry policy, built on tenacity.

Every loop that retries (connecting at start, the relay, subscribing, a command held while the
database is away, the purge of idempotency records, waiting for a worker) iterates a
``tenacity.AsyncRetrying`` built here by ``retrying``::

    async for attempt in retrying(first=0.2, most=5.0, retry=retry_if_exception_type(...), ...):
        with attempt:
            ...

- The wait after the n-th failed attempt is drawn uniformly from [d / 2, d] seconds, where the
  nominal delay d = min(first * 2 ** (n - 1), most) doubles from ``first`` up to ``most`` (see
  ``backoff``). Jitter keeps workers that lost the same server at the same moment (a broker
  restart, a fail-over) from coming back in lockstep; the floor of d / 2 keeps any from retrying
  in a hot loop.
- Which errors are retried is the caller's ``retry=`` predicate; an error it does not retry is
  raised at once, unchanged.
- A loop with a stop event gives up as soon as it is set: a wait under way ends at once, and no
  attempt starts after it. The loop then raises ``Stopped``.
- A retrying object is used once. A loop that runs forever builds a fresh one for each run of
  attempts, so after a success the delay starts again from ``first``.
- On a hot path (a command held while the database is away) ``try_first`` makes the first
  attempt without a loop and builds one only after it failed: the same waits and log lines.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, wait_exponential, wait_random_exponential
from tenacity.retry import retry_all, retry_base, retry_if_exception
from tenacity.wait import wait_base

T = TypeVar("T")


class Stopped(Exception):
    """The loop's stop event was set before an attempt succeeded; no further attempt was made.

    Its ``__cause__`` is the last attempt's error when the stop came during a failed attempt.
    """


def backoff(first: float, most: float) -> wait_base:
    """The wait after the n-th failed attempt (s): uniform in [d / 2, d], d = min(first * 2 ** (n - 1), most).

    Raises ``ValueError`` unless 0 < ``first`` <= ``most``.
    """
    if not 0 < first <= most:
        raise ValueError(f"need 0 < first <= most, got first={first}, most={most}")
    # "Equal jitter": half the nominal delay, plus a random share of the other half. tenacity's
    # own jittered waits alone do not keep both properties the worker needs: wait_random_exponential
    # ("full jitter", uniform in [0, d]) can draw delays near zero, a hot loop against a server
    # that is down; wait_exponential_jitter adds a fixed jitter and then clips at its maximum, so
    # every worker that has reached the cap waits exactly the same and they retry in lockstep.
    half, half_most = first / 2, most / 2
    return wait_exponential(multiplier=half, max=half_most) + wait_random_exponential(
        multiplier=half, max=half_most
    )


_NOT_A_CANCELLATION = retry_if_exception(lambda exc: isinstance(exc, Exception))


def retrying(
    *,
    first: float,
    most: float,
    retry: retry_base,
    before_sleep: Callable[[RetryCallState], None] | None = None,
    stop: asyncio.Event | None = None,
) -> AsyncRetrying:
    """A fresh ``AsyncRetrying``: attempts until one succeeds, waiting ``backoff(first, most)`` (s)
    between them.

    ``retry`` says which errors are retried; any other error of an attempt is raised unchanged, and
    so is a cancellation (or any ``BaseException`` that is not an ``Exception``), whatever ``retry``
    says: a predicate that looks at an error's cause or context would otherwise keep a cancelled
    task retrying, as a drain's deadline found.
    ``before_sleep`` is called before each wait (``retry_in`` and ``failure`` read that state).
    With ``stop``, iterating it raises ``Stopped`` when ``stop`` is set: after an attempt that
    failed, or at once during a wait. Raises ``ValueError`` unless 0 < ``first`` <= ``most``.
    """
    retry = retry_all(_NOT_A_CANCELLATION, retry)
    if stop is None:
        return AsyncRetrying(wait=backoff(first, most), retry=retry, before_sleep=before_sleep)
    event = stop

    # The parameters are named retry_state: tenacity before 7.0 passes them by that name.
    def stop_when_set(retry_state: RetryCallState) -> bool:
        return event.is_set()

    def stopped(retry_state: RetryCallState) -> None:
        raise Stopped from failure(retry_state)

    async def sleep(seconds: float) -> None:
        await sleep_unless(seconds, event)
        if event.is_set():
            raise Stopped  # tenacity would start another attempt after the wait: none after a stop

    return AsyncRetrying(
        sleep=sleep,
        stop=stop_when_set,
        wait=backoff(first, most),
        retry=retry,
        before_sleep=before_sleep,
        retry_error_callback=stopped,
    )


async def try_first(
    attempt: Callable[[], Awaitable[T]],
    retried: tuple[type[BaseException], ...],
    then: Callable[[], AsyncRetrying],
) -> T:
    """``attempt()`` made once directly; after an error of a ``retried`` type, the loop ``then()`` goes on.

    Building an ``AsyncRetrying`` and stepping it once costs about 55 µs, far more than an attempt
    that succeeds at once: the loop is built only after the first attempt failed with an error
    of ``retried``, and it takes that error as its own first attempt's. Its ``before_sleep`` sees
    it and its first wait follows it, so waits and log lines are those of the loop alone. The
    loop's ``retry`` should retry the ``retried`` errors. Any other error is raised unchanged.
    """
    try:
        return await attempt()
    except retried as exc:
        first: BaseException | None = exc
    async for trying in then():
        with trying:
            if first is not None:  # the first attempt's error, as the loop's own first
                error, first = first, None
                raise error
            result = await attempt()
    return result


def retry_in(retry_state: RetryCallState) -> float:
    """The wait about to start (s, to the millisecond), as logged in ``retry_in``; for ``before_sleep``."""
    assert retry_state.next_action is not None, "called before the wait was chosen"
    return round(retry_state.next_action.sleep, 3)


def failure(retry_state: RetryCallState) -> BaseException:
    """The error of the attempt that just failed; for ``before_sleep`` (only failures are retried)."""
    error = retry_state.outcome.exception() if retry_state.outcome is not None else None
    assert error is not None, "called before an attempt failed"
    return error


async def sleep_unless(seconds: float, stop: asyncio.Event | None) -> None:
    """Sleep ``seconds`` (s), or less when ``stop`` is set meanwhile; return at once if it is set."""
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
