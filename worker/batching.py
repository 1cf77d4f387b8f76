"""Group concurrent change requests into batches: one transaction for many commands.

Each caller awaits its own outcome. Batches form naturally: while one is being written, the
next fills up, so a lone command waits for nobody and a busy queue gets large batches.
"""

import asyncio
import collections
import contextlib

import structlog

from .requests import Request
from .service import Outcome, Service
from .transient import TRANSIENT_ERRORS

log = structlog.get_logger("outplan_worker.batching")
Item = tuple[Request, "asyncio.Future[Outcome]"]


class Batcher:
    def __init__(self, service: Service, *, size: int, writers: int) -> None:
        self._service = service
        self._size = size
        self._writers = writers
        self._queue: collections.deque[Item] = collections.deque()
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

    async def submit(self, request: Request) -> Outcome:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        self._wake.set()
        return await future

    async def _write(self) -> None:
        while True:
            await self._wake.wait()
            batch = [self._queue.popleft() for _ in range(min(self._size, len(self._queue)))]
            if not self._queue:
                self._wake.clear()
            batch = [(request, future) for request, future in batch if not future.done()]
            if batch:
                await self._run(batch)

    async def _run(self, batch: list[Item]) -> None:
        delay = 0.05
        while True:
            try:
                outcomes = await self._service.change([request for request, _ in batch])
            except TRANSIENT_ERRORS as exc:
                # Database trouble: hold the whole batch and try again; never give up on it.
                log.warning("database unavailable; holding the messages", error=type(exc).__name__,
                            messages=len(batch), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            except Exception as exc:
                if len(batch) == 1:
                    if not batch[0][1].done():
                        batch[0][1].set_exception(exc)
                    return
                # One command is broken: apply the others one by one so only it fails.
                for item in batch:
                    await self._run([item])
                return
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if not future.done():
                    future.set_result(outcome)
            return
