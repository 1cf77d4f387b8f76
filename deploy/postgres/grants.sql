-- The privileges the worker's own database role needs, and nothing more: no DDL, no ownership
-- (worker/persistence/grants.py lists the same; tests/unit/test_grants.py checks they agree).
--
-- Run it as the role that owns the schema (the one `outplan-worker migrate` runs as), after
-- every migrate, in the worker's database:
--   psql "postgresql://outplan_owner@db/outplans" -v worker_role=outplan_worker -f deploy/postgres/grants.sql
-- The worker role itself is created once by an administrator (CREATE ROLE outplan_worker LOGIN
-- PASSWORD '...'); this file grants and is safe to run again.
\set ON_ERROR_STOP on

GRANT CONNECT ON DATABASE :"DBNAME" TO :"worker_role";
GRANT USAGE ON SCHEMA public TO :"worker_role";

GRANT SELECT, INSERT, UPDATE ON TABLE outplans TO :"worker_role";
GRANT SELECT, INSERT ON TABLE outplan_events TO :"worker_role";
GRANT SELECT, INSERT, DELETE ON TABLE processed_commands TO :"worker_role";
GRANT SELECT, UPDATE ON TABLE outbox_state TO :"worker_role";
GRANT SELECT, UPDATE ON TABLE event_sequence TO :"worker_role";
GRANT SELECT ON TABLE schema_migrations TO :"worker_role";

GRANT USAGE ON SEQUENCE outplan_events_position_seq TO :"worker_role";

GRANT EXECUTE ON FUNCTION outplan_traced_event_body(uuid, text, text, uuid, timestamptz, uuid, integer, bigint, text, text, text)
    TO :"worker_role";
GRANT EXECUTE ON FUNCTION outplan_write_conflict(text) TO :"worker_role";
