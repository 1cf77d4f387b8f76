"""The settlement policy as a decision table: what happened, which delivery, the limit → disposition."""

import pytest

from worker.messaging.settlement import Disposition, Happened, Settle, decide, delivery_number

pytestmark = pytest.mark.unit

LIMIT = 5

ACK, REQUEUE, RETRY = Settle.ACK, Settle.REQUEUE, Settle.RETRY_HERE

# happened, delivery, settle, reply, dead letter
TABLE = [
    (Happened.HANDLED, 1, ACK, True, False),
    (Happened.HANDLED, LIMIT + 3, ACK, True, False),  # a late success is still a success
    (Happened.INVALID, 1, ACK, True, True),  # never requeued: it would be just as invalid
    (Happened.INVALID, LIMIT, ACK, True, True),
    (Happened.UNAVAILABLE, 1, RETRY, False, False),  # held in the process, never dead-lettered
    (Happened.UNAVAILABLE, LIMIT + 10, RETRY, False, False),
    (Happened.FAILED, 1, REQUEUE, False, False),
    (Happened.FAILED, LIMIT - 1, REQUEUE, False, False),
    (Happened.FAILED, LIMIT, ACK, True, True),  # the last delivery: 500 and dead-lettered
    (Happened.FAILED, LIMIT + 1, ACK, True, True),
    (Happened.PUBLISH_REFUSED, 1, ACK, False, False),  # the outcome stands; counted, not retried
    (Happened.PUBLISH_REFUSED, LIMIT, ACK, False, False),
    (Happened.PUBLISH_INTERRUPTED, 1, REQUEUE, False, False),  # sent again on redelivery
    (Happened.PUBLISH_INTERRUPTED, LIMIT, ACK, False, False),  # but not without end
]


@pytest.mark.parametrize(("happened", "delivery", "settle", "reply", "dead_letter"), TABLE)
def test_decision_table(
    happened: Happened, delivery: int, settle: Settle, reply: bool, dead_letter: bool
) -> None:
    assert decide(happened, delivery, LIMIT) == Disposition(settle, reply=reply, dead_letter=dead_letter)


def test_every_kind_is_in_the_table() -> None:
    assert {row[0] for row in TABLE} == set(Happened)


def test_a_limit_of_one_gives_a_failing_command_one_delivery() -> None:
    assert decide(Happened.FAILED, 1, 1).settle is ACK


@pytest.mark.parametrize(
    ("headers", "redelivered", "number"),
    [
        ({}, False, 1),
        ({"x-delivery-count": 4}, False, 1),  # set by the publisher on a first delivery: ignored
        ({"x-delivery-count": 1}, True, 2),
        ({"x-delivery-count": 4}, True, 5),
        ({}, True, 2),  # redelivered, but no count (a classic queue): at least the second
        ({"x-delivery-count": "4"}, True, 2),
        ({"x-delivery-count": True}, True, 2),
        ({"x-delivery-count": -3}, True, 2),
    ],
)
def test_only_the_brokers_count_counts(headers: dict[str, object], redelivered: bool, number: int) -> None:
    assert delivery_number(headers, redelivered) == number
