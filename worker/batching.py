"""Group work items into batches: one transaction for many commands.

Batches form by themselves: while one is being written, the next fills up, so a lone command
waits for nobody and a busy queue gets large batches.

There are ``writers`` lanes, each writing one batch at a time. An item with a key (an outplan
id) always goes to the same lane, so batches written side by side never touch the same outplan:
they do not wait on each other's row locks, and one outplan's commands are applied in the order
they arrived. Items without a key (creates) go to the shortest lane. The ``process`` callable
owns each batch from then on and must settle every item in it.
"""

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger("outplan_worker.batching")
T = TypeVar("T")


class _Lane(Generic[T]):
    def __init__(self) -> None:
        self.queue: collections.deque[T] = collections.deque()
        self.wake = asyncio.Event()


class Batcher(Generic[T]):
    def __init__(self, process: Callable[[list[T]], Awaitable[None]], *, size: int, writers: int) -> None:
        self._process = process
        self._size = size
        self._lanes: list[_Lane[T]] = [_Lane() for _ in range(writers)]
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._write(lane), name=f"batch-writer-{i}")
            for i, lane in enumerate(self._lanes)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def add(self, item: T, key: Hashable | None = None) -> None:
        if key is None:
            lane = min(self._lanes, key=lambda lane: len(lane.queue))
        else:
            lane = self._lanes[hash(key) % len(self._lanes)]
        lane.queue.append(item)
        lane.wake.set()

    async def _write(self, lane: _Lane[T]) -> None:
        while True:
            await lane.wake.wait()
            batch = [lane.queue.popleft() for _ in range(min(self._size, len(lane.queue)))]
            if not lane.queue:
                lane.wake.clear()
            if batch:
                try:
                    await self._process(batch)
                except Exception as exc:  # process settles its own items; a writer must not die
                    log.error("batch processing failed", items=len(batch), exc_info=exc)
