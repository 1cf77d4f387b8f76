"""Bulk acknowledgement: which multiple acks go out, whatever order messages finish in."""

from dataclasses import dataclass, field
from typing import cast

import pytest

from worker.messaging.acks import AckTracker
from worker.messaging.incoming import Incoming

pytestmark = pytest.mark.unit


@dataclass
class FakeChannel:
    acks: list[tuple[int, bool]] = field(default_factory=list)
    closed: bool = False

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        if self.closed:
            raise ConnectionResetError("channel is gone")
        self.acks.append((delivery_tag, multiple))


@dataclass
class FakeMessage:
    channel: FakeChannel
    delivery_tag: int


def deliver(tracker: AckTracker, channel: FakeChannel, tags: range) -> list[Incoming]:
    # Stand-ins with the two attributes AckTracker reads (channel and delivery_tag).
    messages = [cast(Incoming, FakeMessage(channel, tag)) for tag in tags]
    for message in messages:
        tracker.received(message)
    return messages


async def test_one_ack_covers_a_run_finished_out_of_order() -> None:
    tracker, channel = AckTracker(), FakeChannel()
    m = deliver(tracker, channel, range(1, 6))
    for i in (2, 1, 0):
        tracker.settled(m[i])
    await tracker.flush()
    assert channel.acks == [(3, True)]
    tracker.settled(m[4])
    await tracker.flush()
    assert channel.acks == [(3, True)], "tag 5 must wait for tag 4"
    assert tracker.waiting == 1
    tracker.settled(m[3])
    await tracker.flush()
    await tracker.flush()  # nothing new: nothing sent
    assert channel.acks == [(3, True), (5, True)]


async def test_a_slow_first_message_holds_back_every_ack() -> None:
    tracker, channel = AckTracker(), FakeChannel()
    m = deliver(tracker, channel, range(1, 101))
    for message in m[1:]:
        tracker.settled(message)
    await tracker.flush()
    assert channel.acks == []
    tracker.settled(m[0])
    await tracker.flush()
    assert channel.acks == [(100, True)]


async def test_a_multiple_ack_never_names_a_rejected_tag() -> None:
    # RabbitMQ closes the channel on a multiple ack whose own tag was already rejected.
    tracker, channel = AckTracker(), FakeChannel()
    m = deliver(tracker, channel, range(1, 5))
    tracker.settled(m[0])
    tracker.settled(m[1])
    tracker.settled(m[2], ack=False)
    await tracker.flush()
    assert channel.acks == [(2, True)]
    tracker.settled(m[3], ack=False)
    await tracker.flush()
    assert channel.acks == [(2, True)], "only rejected deliveries since the last ack: nothing to send"
    assert not tracker.pending(m[3])


async def test_a_new_channel_starts_over_and_old_deliveries_are_ignored() -> None:
    tracker, old, new = AckTracker(), FakeChannel(), FakeChannel()
    before = deliver(tracker, old, range(1, 4))
    tracker.settled(before[0])
    await tracker.flush()
    old.closed = True
    after = deliver(tracker, new, range(1, 3))  # tags start again at 1 on the new channel
    tracker.settled(before[1])
    assert not tracker.pending(before[2])
    tracker.settled(after[1])
    tracker.settled(after[0])
    await tracker.flush()
    assert old.acks == [(1, True)] and new.acks == [(2, True)]


async def test_an_ack_on_a_broken_channel_is_left_to_redelivery() -> None:
    tracker, channel = AckTracker(), FakeChannel(closed=True)
    [message] = deliver(tracker, channel, range(1, 2))
    tracker.settled(message)
    await tracker.flush()  # does not raise: the broker requeues what it never saw acked
    assert channel.acks == []
