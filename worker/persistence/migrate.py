"""Versioned SQL migrations: create the database if needed, apply each file once."""

from importlib import resources
from urllib.parse import unquote, urlsplit

import asyncpg
import structlog

from contracts import names

log = structlog.get_logger(__name__)

_LOCK_KEY = 7_402_911_001  # serialises concurrent `migrate` runs


def _migrations() -> list[tuple[int, str, str]]:
    folder = resources.files("worker.persistence") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.name, entry.read_text()))
    return sorted(found)


async def ensure_database(dsn: str) -> None:
    """Create the database named in ``dsn`` when it does not exist yet."""
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return
    parts = urlsplit(dsn)
    name = unquote(parts.path.lstrip("/")) or unquote(parts.username or "postgres")
    admin = await asyncpg.connect(dsn, database="postgres")
    try:
        quoted = name.replace('"', '""')
        await admin.execute(f'CREATE DATABASE "{quoted}"')
        log.info("database created", database=name)
    except asyncpg.DuplicateDatabaseError:
        pass
    finally:
        await admin.close()


async def migrate(dsn: str, *, event_source: str = names.EVENT_SOURCE) -> list[str]:
    """Apply pending migrations in order; returns the names applied (empty when up to date).

    ``event_source`` is the worker's configured event source: a migration that writes event
    bodies (0004, for events not yet numbered) writes it into them.
    """
    await ensure_database(dsn)
    conn = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        await conn.execute("SELECT set_config('outplan.event_source', $1, false)", event_source)
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in _migrations():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            applied.append(name)
            log.info("migration applied", migration=name)
    finally:
        await conn.close()
    return applied
