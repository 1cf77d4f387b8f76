"""The retry policy: how long each loop waits, what it retries, and when it stops.

A wait after the n-th failed attempt is drawn from [d / 2, d], d = min(first * 2 ** (n - 1), most):
jittered, so workers that lost a server together do not come back in lockstep, and never close
to zero, so none retries in a hot loop. Loops that run forever start again from ``first`` after
a success. A stop ends a wait at once, and no attempt follows it.
"""

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, cast

import aiormq.exceptions
import asyncpg
import pytest
from aio_pika.abc import AbstractChannel
from structlog.testing import capture_logs
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, retry_if_exception_type

from worker import app, retries
from worker.app import StoppedWhileStarting, keep_trying, purge_idempotency_records
from worker.messaging import consumer
from worker.messaging.consumer import until_the_database_answers
from worker.messaging.relay import Relay
from worker.persistence import inbox
from worker.refusals import Misconfigured
from worker.retries import Stopped, backoff, retrying
from worker.settings import Settings

pytestmark = pytest.mark.unit

DRAWS = 400  # per attempt number: enough that a draw near each end of its range is all but certain


def _nominal(first: float, most: float, attempt: int) -> float:
    return min(first * 2.0 ** (attempt - 1), most)


def _after_attempt(attempt: int) -> RetryCallState:
    state = RetryCallState(retry_object=AsyncRetrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    return state


def _within(delay: float, nominal: float) -> bool:
    return nominal / 2 - 1e-9 <= delay <= nominal + 1e-9


# ---- the waits -------------------------------------------------------------------------------


@pytest.mark.parametrize(("first", "most"), [(0.1, 2.0), (0.2, 5.0), (5.0, 3600.0), (0.05, 0.05)])
def test_each_wait_is_drawn_from_half_to_all_of_a_nominal_delay_doubling_from_first_to_most(
    first: float, most: float
) -> None:
    wait = backoff(first, most)
    means = []
    for attempt in range(1, 16):
        nominal = _nominal(first, most, attempt)
        draws = [wait(_after_attempt(attempt)) for _ in range(DRAWS)]
        assert all(_within(d, nominal) for d in draws), (attempt, nominal, min(draws), max(draws))
        # spread over the whole range, not stuck at one end or in the middle
        assert min(draws) < 0.55 * nominal and max(draws) > 0.95 * nominal, (attempt, nominal)
        means.append(statistics.fmean(draws))
        assert 0.7 * nominal < means[-1] < 0.8 * nominal  # uniform: the mean is 3/4 of the nominal
    # The waits grow until the nominal delay reaches `most`, then stay there.
    capped = next(n for n in range(1, 16) if _nominal(first, most, n) == most)
    growing, flat = means[:capped], means[capped - 1 :]
    assert all(later > earlier for earlier, later in zip(growing, growing[1:], strict=False)), means
    assert max(flat) < min(flat) * 1.1, means


def test_a_long_outage_keeps_waiting_the_most_and_never_fails_on_the_attempt_count() -> None:
    wait = backoff(0.1, 5.0)
    for attempt in (100, 1_000, 10_000):
        assert _within(wait(_after_attempt(attempt)), 5.0)


@pytest.mark.parametrize(("first", "most"), [(5.0, 1.0), (0.0, 1.0), (-1.0, 1.0)])
def test_a_first_delay_that_is_not_positive_or_above_the_most_is_refused(first: float, most: float) -> None:
    with pytest.raises(ValueError, match="0 < first <= most"):
        backoff(first, most)
    with pytest.raises(ValueError, match="0 < first <= most"):
        retrying(first=first, most=most, retry=retry_if_exception_type(OSError))


# ---- attempts: what is retried, what is raised -------------------------------------------------


class Script:
    """An attempt that fails with the given errors in turn, then returns the number of attempts."""

    def __init__(self, *errors: BaseException, then: Callable[[], None] = lambda: None) -> None:
        self.errors = list(errors)
        self.attempts = 0
        self.then = then

    async def __call__(self) -> int:
        self.attempts += 1
        if self.errors:
            raise self.errors.pop(0)
        self.then()
        return self.attempts


class Waits:
    """A ``before_sleep`` that records each wait chosen (s) and the error that led to it."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.errors: list[BaseException] = []

    def __call__(self, retry_state: RetryCallState) -> None:
        assert retry_state.next_action is not None
        self.seconds.append(retry_state.next_action.sleep)
        self.errors.append(retries.failure(retry_state))


async def _run(policy: AsyncRetrying, attempt: Callable[[], Awaitable[int]]) -> int:
    async for trying in policy:
        with trying:
            result = await attempt()
    return result


async def test_retried_errors_are_tried_again_after_growing_waits_until_an_attempt_succeeds() -> None:
    errors = [ConnectionRefusedError(), TimeoutError(), ConnectionResetError(), OSError()]
    script, waits = Script(*errors), Waits()
    policy = retrying(first=0.01, most=0.04, retry=retry_if_exception_type(OSError), before_sleep=waits)
    started = time.monotonic()
    assert await _run(policy, script) == 5
    assert waits.errors == errors
    assert all(_within(s, _nominal(0.01, 0.04, n)) for n, s in enumerate(waits.seconds, 1)), waits.seconds
    assert time.monotonic() - started >= sum(waits.seconds) * 0.99  # the waits were slept


async def test_an_error_the_policy_does_not_retry_is_raised_at_once_and_unchanged() -> None:
    bug = ValueError("a bug")
    script, waits = Script(ConnectionRefusedError(), bug), Waits()
    policy = retrying(first=0.01, most=0.04, retry=retry_if_exception_type(OSError), before_sleep=waits)
    with pytest.raises(ValueError) as raised:
        await _run(policy, script)
    assert raised.value is bug
    assert script.attempts == 2 and len(waits.seconds) == 1


async def test_a_cancellation_is_never_retried() -> None:
    script, waits = Script(asyncio.CancelledError()), Waits()
    policy = retrying(first=0.01, most=0.04, retry=retry_if_exception_type(Exception), before_sleep=waits)
    with pytest.raises(asyncio.CancelledError):
        await _run(policy, script)
    assert script.attempts == 1 and not waits.seconds


async def test_a_cancellation_is_never_retried_even_by_a_policy_that_would_retry_anything() -> None:
    script, waits = Script(asyncio.CancelledError()), Waits()
    policy = retrying(first=0.01, most=0.04, retry=retry_if_exception(lambda exc: True), before_sleep=waits)
    with pytest.raises(asyncio.CancelledError):
        await _run(policy, script)
    assert script.attempts == 1 and not waits.seconds


async def test_a_held_batch_cancelled_while_a_refused_privilege_is_its_context_is_not_held_again() -> None:
    # The drain's deadline cancels a batch held after PostgreSQL refused a privilege: the
    # cancellation's context is that refusal, which the hold policy does retry.
    async def cancelled_during_a_refusal() -> int:
        try:
            raise asyncpg.InsufficientPrivilegeError("permission denied for table outplan_events")
        except asyncpg.InsufficientPrivilegeError:
            raise asyncio.CancelledError() from None

    waits = Waits()
    with pytest.raises(asyncio.CancelledError):
        await _run(until_the_database_answers(waits), cancelled_during_a_refusal)
    assert not waits.seconds


# ---- stopping --------------------------------------------------------------------------------


async def test_a_stop_during_a_wait_ends_it_at_once_and_no_attempt_follows() -> None:
    stop = asyncio.Event()
    script, waits = Script(*[ConnectionRefusedError()] * 5), Waits()
    policy = retrying(
        first=30.0, most=60.0, retry=retry_if_exception_type(OSError), before_sleep=waits, stop=stop
    )
    asyncio.get_running_loop().call_later(0.05, stop.set)
    started = time.monotonic()
    with pytest.raises(Stopped):
        await _run(policy, script)
    assert time.monotonic() - started < 1.0  # not the 15-30 s wait
    assert script.attempts == 1 and len(waits.seconds) == 1


async def test_a_stop_during_an_attempt_that_fails_ends_without_a_wait() -> None:
    stop = asyncio.Event()
    refused = ConnectionRefusedError()

    async def attempt() -> int:
        stop.set()
        raise refused

    waits = Waits()
    policy = retrying(
        first=30.0, most=60.0, retry=retry_if_exception_type(OSError), before_sleep=waits, stop=stop
    )
    with pytest.raises(Stopped) as raised:
        await _run(policy, attempt)
    assert raised.value.__cause__ is refused
    assert not waits.seconds


async def test_an_error_not_retried_is_raised_even_when_stopping() -> None:
    stop = asyncio.Event()
    stop.set()
    bug = ValueError("a bug")
    policy = retrying(first=0.01, most=0.04, retry=retry_if_exception_type(OSError), stop=stop)
    with pytest.raises(ValueError) as raised:
        await _run(policy, Script(bug))
    assert raised.value is bug


async def test_sleep_unless_sleeps_the_whole_time_without_a_stop_and_ends_early_with_one() -> None:
    stop = asyncio.Event()
    started = time.monotonic()
    await retries.sleep_unless(0.05, stop)
    assert time.monotonic() - started >= 0.049
    asyncio.get_running_loop().call_later(0.05, stop.set)
    started = time.monotonic()
    await retries.sleep_unless(30.0, stop)
    assert time.monotonic() - started < 1.0
    started = time.monotonic()
    await retries.sleep_unless(30.0, stop)  # already set: no wait at all
    assert time.monotonic() - started < 0.1


# ---- connecting at start-up (0.2 s doubling to 5 s) --------------------------------------------


def _retry_lines(logs: Sequence[Mapping[str, Any]], event: str) -> list[Mapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == event]


async def test_start_up_retries_transient_errors_and_logs_each_wait() -> None:
    script = Script(ConnectionRefusedError(), asyncpg.PostgresConnectionError("gone"))
    with capture_logs() as logs:
        assert await keep_trying("broker", script, asyncio.Event()) == 3
    lines = _retry_lines(logs, "broker unreachable; retrying")
    assert [line["error"] for line in lines] == ["ConnectionRefusedError", "PostgresConnectionError"]
    assert all(_within(line["retry_in"], _nominal(0.2, 5.0, n)) for n, line in enumerate(lines, 1)), lines
    assert all(line["log_level"] == "warning" and line["hint"] for line in lines)


@pytest.mark.parametrize(
    ("error", "says"),
    [
        # a ConnectionError, so transient by its class, yet it will not heal by waiting
        (aiormq.exceptions.ProbableAuthenticationError("ACCESS_REFUSED"), "RabbitMQ refused the login"),
        (asyncpg.InvalidCatalogNameError('database "x" does not exist'), "outplan-worker migrate"),
        (Misconfigured("never migrated"), "never migrated"),
    ],
)
async def test_start_up_raises_a_misconfiguration_at_once(error: Exception, says: str) -> None:
    script = Script(error)
    with capture_logs() as logs, pytest.raises(Misconfigured, match=says):
        await keep_trying("broker", script, asyncio.Event())
    assert script.attempts == 1
    assert not _retry_lines(logs, "broker unreachable; retrying")


async def test_start_up_raises_an_error_that_is_not_transient_unchanged() -> None:
    bug = KeyError("bug")
    script = Script(ConnectionRefusedError(), bug)
    with pytest.raises(KeyError) as raised:
        await keep_trying("database", script, asyncio.Event())
    assert raised.value is bug and script.attempts == 2


async def test_a_stop_while_start_up_waits_ends_it_at_once_without_another_attempt() -> None:
    stop = asyncio.Event()
    script = Script(*[ConnectionRefusedError()] * 5)
    asyncio.get_running_loop().call_later(0.02, stop.set)  # within the first wait, of 0.1 s or more
    started = time.monotonic()
    with capture_logs() as logs, pytest.raises(StoppedWhileStarting):
        await keep_trying("broker", script, stop)
    stopped_after = time.monotonic() - started
    [line] = _retry_lines(logs, "broker unreachable; retrying")
    assert stopped_after < line["retry_in"]  # the wait was cut short
    assert script.attempts == 1  # and no attempt followed the stop


async def test_workers_waiting_for_the_same_server_retry_at_different_times() -> None:
    """Ten workers started together against a broker that is down: their retry delays differ."""

    async def refused() -> None:
        raise ConnectionRefusedError

    async def worker(name: str) -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.5, stop.set)
        with pytest.raises(StoppedWhileStarting):
            await keep_trying(name, refused, stop)

    names = [f"broker {n}" for n in range(10)]
    with capture_logs() as logs:
        await asyncio.gather(*(worker(name) for name in names))
    firsts = [_retry_lines(logs, f"{name} unreachable; retrying")[0]["retry_in"] for name in names]
    assert len(set(firsts)) > 5, firsts
    assert all(_within(first, 0.2) for first in firsts), firsts


# ---- loops that run forever: a fresh start after each success ----------------------------------


class _Clock:
    """Stands in for the waits of the purge (5 s to the hour): records them instead of sleeping."""

    def __init__(self, stop: asyncio.Event, stop_after: int) -> None:
        self.waits: list[float] = []
        self._stop, self._stop_after = stop, stop_after

    async def sleep_unless(self, seconds: float, stop: asyncio.Event | None) -> None:
        self.waits.append(seconds)
        if len(self.waits) >= self._stop_after:
            self._stop.set()
        await asyncio.sleep(0)


@pytest.fixture
def purge_outcomes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[BaseException | int]]:
    """What each purge does in turn: raise the error, or remove that many records."""
    outcomes: list[BaseException | int] = []

    async def purge_older_than(pool: object, hours: float) -> int:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    monkeypatch.setattr(inbox, "purge_older_than", purge_older_than)
    yield outcomes


async def test_the_purge_retries_from_five_seconds_and_starts_again_from_there_after_a_success(
    monkeypatch: pytest.MonkeyPatch, purge_outcomes: list[BaseException | int]
) -> None:
    stop = asyncio.Event()
    clock = _Clock(stop, stop_after=7)
    monkeypatch.setattr(retries, "sleep_unless", clock.sleep_unless)  # the waits between attempts
    monkeypatch.setattr(app, "sleep_unless", clock.sleep_unless)  # the hour between purges
    busy = asyncpg.exceptions.InsufficientResourcesError("too many connections")
    purge_outcomes.extend([busy, TimeoutError(), busy, 3, busy, 0, OSError(), 1])
    with capture_logs() as logs:
        await purge_idempotency_records(cast(asyncpg.Pool, None), 72, stop)
    w = clock.waits
    assert len(w) == 7 and w[3] == w[5] == 3600.0, w  # an hour after each purge that went through
    assert [_within(s, n) for s, n in zip(w[:3], [5.0, 10.0, 20.0], strict=True)] == [True] * 3, w
    assert _within(w[4], 5.0) and _within(w[6], 5.0), w  # from the first step again
    retried = _retry_lines(logs, "idempotency records not purged; retrying")
    assert [line["retry_in"] for line in retried] == [round(s, 3) for s in w if s != 3600.0]
    assert [line["removed"] for line in _retry_lines(logs, "idempotency records purged")] == [3]


async def test_the_purge_raises_an_error_that_is_not_transient(
    purge_outcomes: list[BaseException | int],
) -> None:
    purge_outcomes.append(RuntimeError("a bug"))
    with pytest.raises(RuntimeError, match="a bug"):
        await purge_idempotency_records(cast(asyncpg.Pool, None), 72, asyncio.Event())


class _ScriptedRelay(Relay):
    """A relay whose ``_serve`` fails with the given errors, or returns for None, in turn."""

    def __init__(self, *turns: BaseException | None) -> None:
        super().__init__(Settings(), cast(AbstractChannel, None))
        self.turns = list(turns)

    async def _serve(self) -> None:
        if not self.turns:
            self.stop()
            return
        turn = self.turns.pop(0)
        if turn is not None:
            raise turn


async def test_the_relay_restarts_after_any_error_and_waits_from_the_first_step_after_a_success() -> None:
    relay = _ScriptedRelay(
        OSError("reset"), ValueError("a bug"), TimeoutError(), None, ConnectionResetError()
    )
    with capture_logs() as logs:
        await asyncio.wait_for(relay.run(), 5)
    lines = [
        e
        for e in logs
        if e["event"] in {"relay interrupted; retrying", "relay failed unexpectedly; restarting it"}
    ]
    assert [(line["event"], line["log_level"], line["error"]) for line in lines] == [
        ("relay interrupted; retrying", "warning", "OSError"),
        ("relay failed unexpectedly; restarting it", "error", "ValueError"),
        ("relay interrupted; retrying", "warning", "TimeoutError"),
        ("relay interrupted; retrying", "warning", "ConnectionResetError"),
    ]
    assert lines[1]["exc_info"].args == ("a bug",)
    nominal = [0.1, 0.2, 0.4, 0.1]  # the fourth after _serve returned: from the first step again
    assert all(_within(line["retry_in"], n) for line, n in zip(lines, nominal, strict=True)), lines


async def test_a_stop_while_the_relay_waits_to_restart_ends_it_at_once() -> None:
    relay = _ScriptedRelay(*[OSError()] * 20)
    task = asyncio.create_task(relay.run())
    await asyncio.sleep(0.7)  # after 3 or 4 attempts, in a wait of up to 0.8 s
    left = len(relay.turns)
    relay.stop()
    started = time.monotonic()
    await asyncio.wait_for(task, 1.0)
    assert time.monotonic() - started < 0.1
    assert 20 - left >= 3 and len(relay.turns) == left  # it kept on retrying; no attempt after the stop


async def test_a_stop_while_the_purge_waits_to_retry_ends_it_at_once(
    purge_outcomes: list[BaseException | int],
) -> None:
    purge_outcomes.extend([TimeoutError()] * 5)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    started = time.monotonic()
    await asyncio.wait_for(purge_idempotency_records(cast(asyncpg.Pool, None), 72, stop), 2.0)
    assert time.monotonic() - started < 1.0  # not the 2.5-5 s wait
    assert len(purge_outcomes) == 4


# ---- a command held while the database is away (0.05 s doubling to 2 s) -------------------------


async def test_a_held_command_is_retried_through_transient_errors_and_a_bug_is_raised() -> None:
    transient = [
        asyncpg.PostgresConnectionError("gone"),
        asyncpg.exceptions.SerializationError("conflict"),
        ConnectionResetError(),
    ]
    waits = Waits()
    assert await _run(until_the_database_answers(waits), Script(*transient)) == 4
    assert waits.errors == transient
    assert all(_within(s, _nominal(0.05, 2.0, n)) for n, s in enumerate(waits.seconds, 1)), waits.seconds

    bug = ZeroDivisionError()
    with pytest.raises(ZeroDivisionError) as raised:
        await _run(until_the_database_answers(Waits()), Script(bug))
    assert raised.value is bug


async def test_a_first_try_builds_no_loop_and_a_loop_after_it_waits_and_logs_as_the_loop_alone() -> None:
    def no_loop() -> AsyncRetrying:
        raise AssertionError(
            "a retrying loop was built for a first attempt that did not fail with a retried error"
        )

    assert await retries.try_first(Script(), (OSError,), no_loop) == 1
    bug = ZeroDivisionError()
    with pytest.raises(ZeroDivisionError) as raised:
        await retries.try_first(Script(bug), (OSError,), no_loop)
    assert raised.value is bug

    errors = [ConnectionRefusedError(), TimeoutError(), ConnectionResetError()]
    script, waits = Script(*errors), Waits()

    def loop() -> AsyncRetrying:
        return retrying(first=0.01, most=0.04, retry=retry_if_exception_type(OSError), before_sleep=waits)

    assert await retries.try_first(script, (OSError,), loop) == 4  # the first failure is not tried twice
    assert waits.errors == errors  # the first attempt's error is the loop's first: logged and waited on
    assert all(_within(s, _nominal(0.01, 0.04, n)) for n, s in enumerate(waits.seconds, 1)), waits.seconds

    later_bug = ZeroDivisionError()
    with pytest.raises(ZeroDivisionError) as raised:
        await retries.try_first(Script(ConnectionResetError(), later_bug), (OSError,), loop)
    assert raised.value is later_bug


async def test_a_held_command_is_tried_first_without_a_loop_then_held_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    transient = [asyncpg.PostgresConnectionError("gone"), asyncpg.exceptions.SerializationError("conflict")]
    waits = Waits()
    assert await consumer.held(Script(*transient), waits) == 3
    assert waits.errors == transient
    assert all(_within(s, _nominal(0.05, 2.0, n)) for n, s in enumerate(waits.seconds, 1)), waits.seconds

    def no_loop(before_sleep: Callable[[RetryCallState], None]) -> AsyncRetrying:
        raise AssertionError("a retrying loop was built for a query that succeeded at once")

    monkeypatch.setattr(consumer, "until_the_database_answers", no_loop)
    assert await consumer.held(Script(), Waits()) == 1
