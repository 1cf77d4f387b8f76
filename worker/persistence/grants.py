"""The privileges the worker's database role needs, and no more: no DDL, no ownership.

``outplan-worker migrate`` runs as the role that owns the schema; ``run``, ``relay`` and
``replay`` can run as a role granted only these (``deploy/postgres/grants.sql`` grants exactly
them; a test checks that the file and this list agree, and that a worker runs on them).
``LISTEN``/``NOTIFY`` and advisory locks need no grant (PostgreSQL: any role may use them).
"""

import asyncpg

from .connections import Connection

TABLES: dict[str, tuple[str, ...]] = {
    "outplans": ("SELECT", "INSERT", "UPDATE"),  # UPDATE for SELECT ... FOR UPDATE too
    "outplan_events": ("SELECT", "INSERT"),
    "processed_commands": ("SELECT", "INSERT", "DELETE"),  # DELETE: the hourly purge
    "outbox_state": ("SELECT", "UPDATE"),
    "event_sequence": ("SELECT", "UPDATE"),
    "schema_migrations": ("SELECT",),  # the check that the schema is this code's
}
"""Table privileges, by table."""

SEQUENCES: dict[str, tuple[str, ...]] = {"outplan_events_position_seq": ("USAGE",)}
"""Sequence privileges (``outplan_events.position`` is a ``bigserial``: inserts call nextval)."""

FUNCTIONS: dict[str, tuple[str, ...]] = {
    "outplan_traced_event_body(uuid, text, text, uuid, timestamptz, uuid, integer, bigint,"
    " text, text, text)": ("EXECUTE",),
    "outplan_write_conflict(text)": ("EXECUTE",),
}
"""Function privileges (PostgreSQL grants EXECUTE to PUBLIC unless an operator revoked it)."""


def required() -> list[tuple[str, str, str]]:
    """Every ``(kind, object, privilege)`` the worker needs: kind is table, sequence or function."""
    return [
        (kind, name, privilege)
        for kind, objects in (("table", TABLES), ("sequence", SEQUENCES), ("function", FUNCTIONS))
        for name, privileges in objects.items()
        for privilege in privileges
    ]


# The two-argument forms ask about the current user; CASE evaluates only the branch of its kind.
_MISSING = """
SELECT kind, name, privilege FROM unnest($1::text[], $2::text[], $3::text[]) AS r(kind, name, privilege)
WHERE NOT CASE kind WHEN 'table' THEN has_table_privilege(name, privilege)
                    WHEN 'sequence' THEN has_sequence_privilege(name, privilege)
                    ELSE has_function_privilege(name, privilege) END
"""


async def missing_privileges(conn: Connection | asyncpg.Pool) -> list[str]:
    """What the connection's role lacks of ``required()``, as ``"INSERT on table outplans"``
    phrases (empty when nothing), in one query. Needs a migrated schema (``schema_problem``
    first): an object that does not exist raises (``asyncpg.UndefinedTableError``, ...)."""
    kinds, objects, privileges = zip(*required(), strict=True)
    rows = await conn.fetch(_MISSING, list(kinds), list(objects), list(privileges))
    return [f"{r['privilege']} on {r['kind']} {r['name']}" for r in rows]


async def privilege_problem(conn: Connection | asyncpg.Pool) -> str | None:
    """``None`` when the role has every privilege the worker needs; else one sentence naming the
    role, each privilege missing, and how to grant them."""
    missing = await missing_privileges(conn)
    if not missing:
        return None
    role = await conn.fetchval("SELECT current_user")
    return (
        f"PostgreSQL role {role!r} lacks privileges the worker needs: {', '.join(missing)}; as the"
        f" schema's owner, run deploy/postgres/grants.sql with -v worker_role={role}"
    )
