"""Group commit: commands that arrive together are applied and written as one batch.

Batches form by themselves: while one is being written, the next fills up, so a lone command
waits for nobody and a busy queue gets large batches (up to ``size`` items).

There are ``writers`` batch writers, each writing one batch at a time. An item with a key (an
outplan id) always goes to the same batch writer, so batches written side by side never touch the
same outplan: they do not wait on each other's row locks (except the event counter's, held for one
statement and its commit), and one outplan's commands are applied in the order they arrived. Items
without a key (creates) go to the writer with the shortest queue. The ``process`` callable owns
each batch from then on and must settle every item in it.
"""

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger("outplan_worker.batching")
T = TypeVar("T")


class _BatchWriter(Generic[T]):
    """One batch writer's queue, and the event that wakes it when the queue gains an item."""

    def __init__(self) -> None:
        self.queue: collections.deque[T] = collections.deque()
        self.wake = asyncio.Event()


class Batcher(Generic[T]):
    """``add()`` items; ``writers`` tasks hand them to ``process`` in batches of at most ``size``.

    ``start()`` starts the batch writers (one task each, named ``batch-writer-<n>``); ``stop()``
    cancels them, leaving what is queued unprocessed (the caller drains first). An exception from
    ``process`` is logged and the writer goes on: ``process`` must settle its items itself.
    """

    def __init__(self, process: Callable[[list[T]], Awaitable[None]], *, size: int, writers: int) -> None:
        self._process = process
        self._size = size
        self._writers: list[_BatchWriter[T]] = [_BatchWriter() for _ in range(writers)]
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start one task per batch writer."""
        self._tasks = [
            asyncio.create_task(self._write(writer), name=f"batch-writer-{i}")
            for i, writer in enumerate(self._writers)
        ]

    async def stop(self) -> None:
        """Cancel the batch writers and wait until they have ended."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def add(self, item: T, key: Hashable | None = None) -> None:
        """Queue ``item``: with a ``key``, on the writer that key always maps to; else on the
        writer with the shortest queue."""
        if key is None:
            writer = min(self._writers, key=lambda writer: len(writer.queue))
        else:
            writer = self._writers[hash(key) % len(self._writers)]
        writer.queue.append(item)
        writer.wake.set()

    async def _write(self, writer: _BatchWriter[T]) -> None:
        while True:
            await writer.wake.wait()
            batch = [writer.queue.popleft() for _ in range(min(self._size, len(writer.queue)))]
            if not writer.queue:
                writer.wake.clear()
            if batch:
                try:
                    await self._process(batch)
                except Exception as exc:  # process settles its own items; a writer must not die
                    log.error("batch processing failed", items=len(batch), exc_info=exc)
