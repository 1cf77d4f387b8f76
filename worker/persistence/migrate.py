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


def shipped() -> list[str]:
    """The names of the migrations this code ships, in order (``0001_init.sql``, …)."""
    return [name for _, name, _ in _migrations()]


async def schema_problem(conn: asyncpg.Connection | asyncpg.Pool) -> str | None:
    """``None`` when the database holds exactly the migrations this code ships; else what is wrong
    and what to do about it, in one sentence. Raises what the query raises (e.g. a lost link)."""
    try:
        rows = await conn.fetch("SELECT version, name FROM schema_migrations")
    except asyncpg.UndefinedTableError:
        return "the database was never migrated: run `outplan-worker migrate`"
    ours = {version: name for version, name, _ in _migrations()}
    applied = {int(r["version"]): str(r["name"]) for r in rows}
    missing = [ours[v] for v in sorted(set(ours) - set(applied))]
    unknown = [applied[v] for v in sorted(set(applied) - set(ours))]
    if missing:
        return (
            f"the database schema is older than this code ({', '.join(missing)} not applied):"
            " run `outplan-worker migrate`"
        )
    if unknown:
        return (
            f"the database schema is newer than this code (it has {', '.join(unknown)}, which this"
            " version does not know): run the version that migrated it, or point OUTPLAN_DATABASE_URL"
            " at a database for this one"
        )
    return None


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
