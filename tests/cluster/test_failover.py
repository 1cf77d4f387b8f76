"""Failover under a steady stream of mutations: a RabbitMQ node lost, then another; the PostgreSQL
primary lost and its synchronous standby promoted. Nothing accepted may go missing, nothing may
be applied twice, every change's event must arrive once at least, in order per outplan.

Run with ``pytest -m cluster -s`` to see the ledgers and the recovery times.
"""

import asyncio
from collections.abc import Callable

import asyncpg
import pytest

from tests.cluster.conftest import Faults, drive, ready_and_open, report
from tests.faults.traffic import Traffic
from tests.support.cluster import PgPair, RabbitCluster, RabbitNode
from tests.support.workers import WorkerNames, WorkerProcess
from worker.persistence.outbox import OutboxStore

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(400)]


def consumer_node(rabbit: RabbitCluster, worker: WorkerProcess) -> RabbitNode:
    """The node the worker's consumer connection is on now, from the worker's own log."""
    lines = [
        entry
        for entry in worker.log_entries()
        if entry.get("event") in ("broker connected", "broker connection restored")
        and entry.get("connection") == "consumer"
    ]
    assert lines, "the worker logged no consumer connection"
    return rabbit.node_on_port(int(lines[-1]["broker"].rsplit(":", 1)[1]))


async def lose_node(rabbit: RabbitCluster, node: RabbitNode, queue: str, faults: Faults, what: str) -> None:
    """SIGKILL ``node``, leave it down a few seconds, start it again and wait until the cluster is whole."""
    faults.now(f"SIGKILL {node.name} ({what})")
    await asyncio.to_thread(node.kill)
    await asyncio.sleep(5)  # traffic goes on with two nodes of three
    node.start()
    await node.wait_started()
    seconds = await rabbit.wait_whole(queue)
    print(
        f"cluster: {node.name} back in the cluster, its queue member in service {seconds:.1f} s after start"
    )


async def test_losing_the_command_queue_leader_then_the_consumers_node(
    rabbit: RabbitCluster,
    workers: Callable[..., WorkerProcess],
    traffic: Traffic,
    names: WorkerNames,
    database: str,
) -> None:
    worker = workers()
    await ready_and_open(rabbit, traffic, [worker])
    # Replicated by the broker's default group size (3), not by an argument of the declaration.
    members = await rabbit.members_in_service(names.command_queue)
    assert members == {node.name for node in rabbit.nodes}
    faults = Faults()

    async def script() -> None:
        await asyncio.sleep(3)
        leader = await rabbit.leader_of(names.command_queue)
        await lose_node(rabbit, leader, names.command_queue, faults, "leader of the command queue")
        await asyncio.sleep(3)
        target = consumer_node(rabbit, worker)
        if target is leader:  # the one just restarted: lose another, never two at once
            target = next(node for node in rabbit.nodes if node is not leader)
        await lose_node(rabbit, target, names.command_queue, faults, "the consumer's node")

    await drive(traffic, script)
    figures = await traffic.ledger.audit(database, traffic.customers)
    figures.faults_injected = len(faults.happened)
    report("RabbitMQ node loss", figures, faults.recoveries(traffic), [worker])
    assert worker.process.poll() is None, "the worker exited"
    moves = [
        (entry["connection"], entry["broker"]) for entry in worker.log_events("broker connection restored")
    ]
    print(f"cluster: RabbitMQ node loss: the worker's connections reconnected to {moves}")
    assert any(role == "consumer" for role, _ in moves)  # the second fault took the consumer's node


async def test_database_failover_to_the_synchronous_standby(
    rabbit: RabbitCluster,
    postgres: PgPair,
    workers: Callable[..., WorkerProcess],
    traffic: Traffic,
    names: WorkerNames,
    database: str,
) -> None:
    # Two workers, whose relays poll only every 30 s: the events the standby relay's process
    # commits reach the leading relay promptly only through LISTEN/NOTIFY, so their arrival after
    # the failover shows LISTEN was established again on the new primary.
    both = [workers(relay_poll_seconds="30"), workers(relay_poll_seconds="30")]
    await ready_and_open(rabbit, traffic, both)
    faults = Faults()

    async def script() -> None:
        await asyncio.sleep(4)
        faults.now("primary stopped -m immediate, standby promoted")
        await postgres.fail_over()
        await asyncio.sleep(12)

    await drive(traffic, script)
    figures = await traffic.ledger.audit(database, traffic.customers)
    figures.faults_injected = 1
    report("PostgreSQL failover", figures, faults.recoveries(traffic), both)

    # The old primary is gone, and the relay lock with it: a relay holds it on the new primary.
    conn = await asyncpg.connect(postgres.standby.dsn.rsplit("/", 1)[0] + "/outplans")
    try:
        assert not await conn.fetchval("SELECT pg_is_in_recovery()")
        holder = await OutboxStore(conn).lock_holder()
    finally:
        await conn.close()
    assert holder is not None
    leading = [len(w.log_events("relay is publishing")) for w in both]
    print(f"cluster: PostgreSQL failover: 'relay is publishing' logged {leading} times by the two workers")
    assert sum(leading) >= 2  # a leader before the failover, and one after

    # Events of changes accepted well after the failover (the relay has had 5 s to come back)
    # arrive within 3 s of their reply, not after the 30 s poll: LISTEN works again.
    failed_over_at = faults.happened[0][1]
    sent = traffic.ledger.sent
    lags = [
        d.received_at - replied
        for d in traffic.ledger.deliveries
        if d.correlation_id in sent
        and (replied := sent[d.correlation_id].replied_at) is not None
        and replied > failed_over_at + 5
    ]
    assert lags, "no change was accepted after the failover"
    print(
        f"cluster: PostgreSQL failover: {len(lags)} events later, the last {max(lags):.2f} s after its reply"
    )
    assert max(lags) < 3.0
