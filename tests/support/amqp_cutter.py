"""A TCP relay to the real broker that drops the connection at a chosen AMQP method.

It passes the protocol header and every frame both ways, and when the client sends the method
``cut_at`` (``(class id, method id)``, e.g. ``CHANNEL_OPEN``) it closes both sides instead of
passing it on: to the client, the broker vanished just then. Serve it on the running loop with
``async with AmqpCutter(...) as cutter`` and connect to ``cutter.url``.

With ``swallow=True`` it keeps the connection instead and drops that method alone, with its
content (the header and body frames that follow it on its channel): to the client, a broker that
never answers a publish, while heartbeats and everything else still pass.
"""

import asyncio
import contextlib
import struct
from types import TracebackType
from typing import Self

CHANNEL_OPEN = (20, 10)
BASIC_CONSUME = (60, 20)
BASIC_PUBLISH = (60, 40)
_METHOD_FRAME = 1
_HEADER_FRAME = 2
_BODY_FRAME = 3


class AmqpCutter:
    def __init__(
        self,
        cut_at: tuple[int, int],
        *,
        broker: tuple[str, int] = ("127.0.0.1", 5672),
        swallow: bool = False,
    ) -> None:
        self._cut_at = cut_at
        self._broker = broker
        self._swallow = swallow
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.cuts = 0  # how many connections were dropped at cut_at (or methods swallowed)

    @property
    def url(self) -> str:
        assert self._server is not None, "use it as an async context manager"
        port = self._server.sockets[0].getsockname()[1]
        return f"amqp://guest:guest@127.0.0.1:{port}/"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        broker_reader, broker_writer = await asyncio.open_connection(*self._broker)
        back = asyncio.create_task(self._pipe(broker_reader, client_writer))
        self._tasks.add(back)
        try:
            broker_writer.write(await client_reader.readexactly(8))  # b"AMQP\x00\x00\x09\x01"
            swallowing: dict[int, int | None] = {}  # channel -> body bytes still to drop (None: the header)
            while True:
                head = await client_reader.readexactly(7)
                kind, channel, size = struct.unpack(">BHI", head)
                rest = await client_reader.readexactly(size + 1)  # payload and frame end
                if kind == _METHOD_FRAME and struct.unpack(">HH", rest[:4]) == self._cut_at:
                    self.cuts += 1
                    if not self._swallow:
                        return
                    swallowing[channel] = None
                    continue
                if channel in swallowing and kind in (_HEADER_FRAME, _BODY_FRAME):
                    left = (
                        struct.unpack(">Q", rest[4:12])[0] if kind == _HEADER_FRAME else swallowing[channel]
                    )
                    left = (left or 0) - (size if kind == _BODY_FRAME else 0)
                    if left > 0:
                        swallowing[channel] = left
                    else:
                        del swallowing[channel]
                    continue
                broker_writer.write(head + rest)
                await broker_writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            for writer in (client_writer, broker_writer):
                writer.close()
            back.cancel()
            self._tasks.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()
