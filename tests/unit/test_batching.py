"""Batch writers: one outplan's commands always go to the same writer, in arrival order."""

import asyncio

import pytest

from worker.batching import Batcher

pytestmark = pytest.mark.unit


async def test_batches_side_by_side_never_share_a_key_and_keep_arrival_order() -> None:
    running: list[set[str]] = []
    seen: list[tuple[str, int]] = []
    overlaps = 0

    async def process(batch: list[tuple[str, int]]) -> None:
        nonlocal overlaps
        keys = {key for key, _ in batch}
        overlaps += sum(1 for other in running if other & keys)
        running.append(keys)
        await asyncio.sleep(0.001)
        seen.extend(batch)
        running.remove(keys)

    batcher: Batcher[tuple[str, int]] = Batcher(process, size=5, writers=4)
    batcher.start()
    for i in range(400):
        key = f"outplan-{i % 7}"
        batcher.add((key, i), key=key)
        if i % 13 == 0:
            await asyncio.sleep(0)  # let batches form and run while more arrive
    while len(seen) < 400:
        await asyncio.sleep(0.005)
    await batcher.stop()
    assert overlaps == 0
    for k in range(7):
        mine = [i for key, i in seen if key == f"outplan-{k}"]
        assert mine == sorted(mine) and len(mine) == len(range(k, 400, 7))


async def test_items_without_a_key_go_to_the_shortest_queue() -> None:
    release = asyncio.Event()
    sizes: list[int] = []

    async def process(batch: list[int]) -> None:
        sizes.append(len(batch))
        await release.wait()

    batcher: Batcher[int] = Batcher(process, size=100, writers=3)
    batcher.start()
    for i in range(3):
        batcher.add(i)  # one per writer: each writer starts a batch of one and blocks
    await asyncio.sleep(0.01)
    for i in range(9):
        batcher.add(i)  # queued evenly while every writer is busy
    release.set()
    await asyncio.sleep(0.01)
    await batcher.stop()
    assert sorted(sizes) == [1, 1, 1, 3, 3, 3]
