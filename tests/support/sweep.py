"""Delete the queues and exchanges that earlier test and benchmark runs left on the local broker.

    .venv/bin/python -m tests.support.sweep

Tests and benchmarks name what they declare ``test-…`` or ``bench-…``; a run that was killed, or a
test that declares a queue nobody ever consumes (``auto_delete`` never fires then), leaves them
behind, and a broker that has collected hundreds of them was seen to accept TCP connections and
never answer AMQP. ``.ci/run`` sweeps before the tests. Names are listed with ``rabbitmqctl``
(root or the ``rabbitmq`` user only): without it the sweep says so and changes nothing. Run it only
when no other test run uses the broker: it deletes every such name, in use or not.
"""

import asyncio
import shutil
import subprocess
import sys

import aio_pika

from tests.conftest import AMQP_URL

PREFIXES = ("test-", "bench-")


def listed(kind: str) -> list[str]:
    """The names of ``kind`` (``queues`` or ``exchanges``) on the default vhost that start with one
    of ``PREFIXES``; raises ``subprocess.CalledProcessError`` when rabbitmqctl fails."""
    out = subprocess.run(
        ["rabbitmqctl", "-q", f"list_{kind}", "name"], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    return [name for name in (line.strip() for line in out.splitlines()) if name.startswith(PREFIXES)]


async def sweep(queues: list[str], exchanges: list[str]) -> None:
    """Delete ``queues``, then ``exchanges``, over one AMQP connection to ``AMQP_URL``."""
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue)
        for exchange in exchanges:
            await channel.exchange_delete(exchange)


def main() -> int:
    """Sweep and print what was deleted; 0 also when rabbitmqctl is missing or refuses to list."""
    if shutil.which("rabbitmqctl") is None:
        print("sweep: no rabbitmqctl here; leftover test queues are not removed")
        return 0
    try:
        queues, exchanges = listed("queues"), listed("exchanges")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        print(f"sweep: rabbitmqctl could not list ({type(exc).__name__}); nothing removed")
        return 0
    asyncio.run(sweep(queues, exchanges))
    print(f"sweep: {len(queues)} queues and {len(exchanges)} exchanges left by earlier runs deleted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
