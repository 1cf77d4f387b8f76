"""What an operator ships for least privilege agrees with what the worker does: the broker
definitions with the declared topology, the SQL grants with the privileges checked at start; and
the comparison through the management API finds each difference (the machine's broker has no
management plugin, so it is tested here on the API's JSON as RabbitMQ documents it)."""

import json
import re
from pathlib import Path
from typing import Any

import pytest

from worker import settings
from worker.messaging import management
from worker.messaging.topology import ExchangeSpec, QueueSpec, plan
from worker.persistence import grants
from worker.settings import Settings

pytestmark = pytest.mark.unit

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_the_shipped_definitions_declare_what_the_worker_declares() -> None:
    definitions = json.loads((DEPLOY / "rabbitmq" / "definitions.json").read_text())
    topology = plan(Settings())
    assert {(x["name"], x["type"], x["durable"], x["vhost"]) for x in definitions["exchanges"]} == {
        (x.name, x.type, x.durable, "/") for x in topology.exchanges
    }
    assert all(
        not x["auto_delete"] and not x["internal"] and not x["arguments"] for x in definitions["exchanges"]
    )
    assert {q["name"]: (q["durable"], q["arguments"]) for q in definitions["queues"]} == {
        q.name: (q.durable, q.arguments) for q in topology.queues
    }
    assert all(not q["auto_delete"] for q in definitions["queues"])
    assert sorted(
        (b["source"], b["destination"], b["destination_type"], b["routing_key"])
        for b in definitions["bindings"]
    ) == sorted((b.exchange, b.queue, "queue", b.routing_key) for b in topology.bindings)


def test_the_shipped_grants_are_exactly_the_privileges_checked_at_start() -> None:
    sql = (DEPLOY / "postgres" / "grants.sql").read_text()
    statements = " ".join(line for line in sql.splitlines() if not line.startswith("--"))
    granted = set()
    for privileges, kind, name in re.findall(
        r"GRANT ([A-Z, ]+) ON (TABLE|SEQUENCE|FUNCTION) (\w+(?:\([^)]*\))?)\s+TO", statements
    ):
        for privilege in privileges.split(","):
            granted.add((kind.lower(), name, privilege.strip()))
    assert granted == set(grants.required())
    assert "CREATE" not in {p for _, _, p in granted} and "ALL" not in sql.upper().split()


def test_the_functions_granted_are_the_ones_the_worker_statements_call() -> None:
    # A migration that gives the write statement a new function must grant it too: with EXECUTE
    # revoked from PUBLIC, as hardened databases do, the worker would fail on its first write.
    root = Path(__file__).resolve().parents[2]
    defined = {
        name
        for migration in (root / "worker" / "persistence" / "migrations").glob("*.sql")
        for name in re.findall(r"CREATE (?:OR REPLACE )?FUNCTION (\w+)\(", migration.read_text())
    }
    code = " ".join(path.read_text() for path in (root / "worker").rglob("*.py"))
    called = {name for name in defined if re.search(rf"\b{name}\(", code)}
    assert called == {key.split("(")[0] for key in grants.FUNCTIONS}


def _queue(**overrides: Any) -> dict[str, Any]:
    """GET /api/queues/{vhost}/{name}, trimmed to what is compared (RabbitMQ 3.10's field names)."""
    reported: dict[str, Any] = {
        "name": "q",
        "vhost": "/",
        "durable": True,
        "auto_delete": False,
        "type": "quorum",
        "arguments": {"x-queue-type": "quorum", "x-delivery-limit": 20},
    }
    reported.update(overrides)
    return reported


QUEUE = QueueSpec("q", {"x-queue-type": "quorum", "x-delivery-limit": 20})


def test_a_queue_as_declared_has_no_differences() -> None:
    assert management.queue_differences(QUEUE, _queue()) == []


@pytest.mark.parametrize(
    ("reported", "difference"),
    [
        (
            _queue(arguments={"x-queue-type": "quorum", "x-delivery-limit": 10}),
            "queue 'q': argument x-delivery-limit is 10, expected 20",
        ),
        (
            _queue(arguments={"x-queue-type": "quorum"}),
            "queue 'q': argument x-delivery-limit is missing, expected 20",
        ),
        (
            _queue(arguments={"x-queue-type": "quorum", "x-delivery-limit": 20, "x-max-length": 5}),
            "queue 'q': argument x-max-length is 5, not declared by the worker",
        ),
        (_queue(durable=False), "queue 'q': durable is False, expected True"),
    ],
)
def test_each_queue_difference_is_named(reported: dict[str, Any], difference: str) -> None:
    assert management.queue_differences(QUEUE, reported) == [difference]


def test_an_exchange_of_another_type_is_named() -> None:
    expected = ExchangeSpec("outplan.events", "topic")
    assert management.exchange_differences(expected, {"type": "topic", "durable": True}) == []
    assert management.exchange_differences(expected, {"type": "fanout", "durable": True}) == [
        "exchange 'outplan.events': type is fanout, expected topic"
    ]


@pytest.mark.parametrize(
    ("url", "vhost"),
    [
        ("amqp://u:p@h:5672/", "/"),
        ("amqps://u:p@h/", "/"),
        ("amqps://u:p@h:5671/outplans?cafile=/ca.pem", "outplans"),
        ("amqp://u:p@h/%2Fprod", "/prod"),
        ("amqp://u:p@h1/a, amqp://u:p@h2/a", "a"),
    ],
)
def test_the_virtual_host_is_read_from_the_amqp_url(url: str, vhost: str) -> None:
    assert management.vhost_of(url) == vhost


def test_a_declaration_mode_other_than_declare_or_passive_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTPLAN_TOPOLOGY", "check")
    with pytest.raises(settings.InvalidSettings) as refused:
        settings.load()
    assert refused.value.lines == ["OUTPLAN_TOPOLOGY: Input should be 'declare' or 'passive'"]
