"""Group work items into batches: one transaction for many commands.

Batches form by themselves: while one is being written, the next fills up, so a lone command
waits for nobody and a busy queue gets large batches. ``writers`` batches run at once. The
``process`` callable owns each batch from then on and must settle every item in it.
"""

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger("outplan_worker.batching")
T = TypeVar("T")


class Batcher(Generic[T]):
    def __init__(self, process: Callable[[list[T]], Awaitable[None]], *, size: int, writers: int) -> None:
        self._process = process
        self._size = size
        self._writers = writers
        self._queue: collections.deque[T] = collections.deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._write(), name=f"batch-writer-{i}") for i in range(self._writers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def add(self, item: T) -> None:
        self._queue.append(item)
        self._wake.set()

    async def _write(self) -> None:
        while True:
            await self._wake.wait()
            batch = [self._queue.popleft() for _ in range(min(self._size, len(self._queue)))]
            if not self._queue:
                self._wake.clear()
            if batch:
                try:
                    await self._process(batch)
                except Exception as exc:  # process settles its own items; a writer must not die
                    log.error("batch processing failed", items=len(batch), exc_info=exc)
