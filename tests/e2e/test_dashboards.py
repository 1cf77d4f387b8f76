"""Every metric the Grafana dashboard and the alert rules in deploy/ read is one a running worker
serves on /metrics, after real traffic: commands of each kind, events a subscriber takes, and an
invalid command that is dead-lettered."""

import asyncio
import copy
import time
import urllib.request
import uuid

import aio_pika
import pytest

from tests.conftest import AMQP_URL
from tests.support.commands import SOURCE
from tests.support.dashboards import (
    DATASOURCE,
    dashboard_expressions,
    load_dashboard,
    load_rules,
    rule_expressions,
)
from tests.support.promql import assert_all_exposed, sampled_names
from tests.support.workers import WorkerProcess
from worker.client import OutplanClient

pytestmark = pytest.mark.e2e

#: Series the traffic below creates; the exposition is read once they are all there.
WANTED = (
    'outplan_commands_total{command="outplan.create",outcome="201"}',
    'outplan_commands_total{command="outplan.delete",outcome="200"}',
    'outplan_dead_lettered_total{reason="MALFORMED_JSON"}',
    'outplan_events_published_total{type="outplan_deleted"}',
    'outplan_command_duration_seconds_bucket{command="outplan.list"',
)


async def traffic(worker: WorkerProcess) -> None:
    """The tutorial's operations, seen by a subscriber, and one body that is not JSON."""
    customer = str(uuid.uuid4())
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        subscriber = await channel.declare_queue(exclusive=True)
        await subscriber.bind(worker.names.event_exchange, routing_key="#")
        client = OutplanClient(connection, exchange=worker.names.command_exchange)
        await client.start()
        created = await client.create(customer, source=SOURCE)
        assert created.status_code == 201, created
        outplan = created.data["id"]
        assert (await client.get(customer, outplan)).status_code == 200
        assert (await client.list(customer)).status_code == 200
        assert (await client.update_basic_info(customer, outplan, name="n", detail="d")).status_code == 200
        assert (await client.delete(customer, outplan)).status_code == 200
        refused = await client.send("outplan.create", b"{broken", message_id=str(uuid.uuid4()))
        assert refused.status_code == 400, refused
        received = 0
        async with asyncio.timeout(10):
            while received < 3:  # created, updated, deleted: routed to us, so counted as published
                if await subscriber.get(no_ack=True, fail=False):
                    received += 1
                else:
                    await asyncio.sleep(0.05)


def scrape(worker: WorkerProcess) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=5) as response:
        assert response.status == 200
        text: str = response.read().decode()
        return text


@pytest.fixture(scope="module")
def exposition(worker: WorkerProcess) -> str:
    """/metrics of the session's worker once the traffic's series are all in it."""
    asyncio.run(traffic(worker))
    deadline = time.monotonic() + 10
    while True:
        text = scrape(worker)
        missing = [w for w in WANTED if w not in text]
        if not missing:
            return text
        assert time.monotonic() < deadline, f"not in /metrics after 10 s: {missing}"
        time.sleep(0.2)


def test_every_metric_a_panel_or_a_rule_names_is_served(exposition: str) -> None:
    expressions = {**dashboard_expressions(load_dashboard()), **rule_expressions(load_rules())}
    assert len(expressions) >= 20
    assert_all_exposed(expressions, exposition)


def test_the_panels_main_series_have_samples(exposition: str) -> None:
    # Declared is not enough for these: the traffic made them, so a panel over them shows data.
    assert {
        "outplan_commands_total",
        "outplan_command_duration_seconds_bucket",
        "outplan_command_duration_seconds_sum",
        "outplan_command_duration_seconds_count",
        "outplan_events_published_total",
        "outplan_dead_lettered_total",
        "outplan_outbox_backlog",
        "outplan_outbox_oldest_age_seconds",
        "outplan_consumer_attached",
        "outplan_relay_leader",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    } <= sampled_names(exposition)


def test_a_panel_or_rule_naming_a_metric_the_worker_lacks_fails_the_check(exposition: str) -> None:
    dashboard = copy.deepcopy(load_dashboard())
    dashboard["panels"].append(
        {
            "id": 999,
            "type": "timeseries",
            "title": "typo",
            "datasource": DATASOURCE,
            "targets": [
                {
                    "refId": "A",
                    "expr": 'sum by (outcome) (rate(outplan_command_total{job=~"$job"}[$__rate_interval]))',
                }
            ],
        }
    )
    rules = copy.deepcopy(load_rules())
    rules["groups"][0]["rules"].append({"alert": "Typo", "expr": "max(outplan_relay_leaders) == 0"})
    expressions = {**dashboard_expressions(dashboard), **rule_expressions(rules)}
    with pytest.raises(AssertionError) as failure:
        assert_all_exposed(expressions, exposition)
    report = str(failure.value)
    assert "panel 'typo' target A: outplan_command_total" in report
    assert "rule Typo: outplan_relay_leaders" in report
    assert report.count("\n  ") == 2, report  # the files' own expressions are not reported
