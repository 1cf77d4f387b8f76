"""Shared fixtures: fresh databases, names and customers per test; real PostgreSQL and RabbitMQ."""

import asyncio
import os
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from worker.persistence.migrate import migrate

# The test extra installs the OpenTelemetry SDK, and a worker with the SDK exports its spans to
# localhost:4318 unless told otherwise, where nothing listens: the workers the tests start record
# no spans, unless a test asks (tests/e2e/test_tracing.py sets its own OTEL_*).
os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")

PG_ADMIN = os.environ.get("OUTPLAN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("OUTPLAN_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")


def database_url(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def create_database() -> str:
    """A new, migrated database; returns its URL."""
    url = database_url(f"outplans_test_{uuid.uuid4().hex[:12]}")
    asyncio.run(migrate(url))
    return url


async def drop_database_async(url: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        name = url.rsplit("/", 1)[1]
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def drop_database(url: str) -> None:
    asyncio.run(drop_database_async(url))


@pytest.fixture(scope="session")
def session_database() -> Iterator[str]:
    """One migrated database for tests that isolate themselves by customer id."""
    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture(scope="session", autouse=True)
def worker_names_deleted() -> Iterator[None]:
    """At the session's end, delete every worker's queues and exchanges the tests named
    (``WorkerNames.fresh``), whether or not each test deleted its own."""
    yield
    from tests.support.workers import delete_all_handed_out  # it imports this module

    asyncio.run(delete_all_handed_out())


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """A migrated database of its own, for tests that look at every row (the relay)."""
    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture
def customer_id() -> uuid.UUID:
    return uuid.uuid4()


#: Suites that start servers of their own beside the machine's and take minutes: they run only when
#: the ``-m`` expression names them (``pytest -m cluster``, ``pytest -m tls``); a plain ``pytest``
#: deselects them, and ``.ci/run`` runs each as a stage of its own.
OWN_SERVER_SUITES = ("cluster", "tls")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the ``OWN_SERVER_SUITES`` tests unless ``-m`` names their marker."""
    expression = config.getoption("markexpr") or ""
    skipped = [suite for suite in OWN_SERVER_SUITES if suite not in expression]
    kept = [item for item in items if not any(item.get_closest_marker(suite) for suite in skipped)]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept
