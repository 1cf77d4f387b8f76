-- Events are numbered by the statement that writes them, from a counter row each writer holds
-- locked until it commits. The next writer can take the counter only after that commit is
-- visible, so numbers follow commit order, without gaps (a rollback returns its numbers), and
-- the relay never sees a number before the ones below it. Each event row is written once, in
-- its final form, instead of being inserted bare and rewritten by the relay.
CREATE TABLE event_sequence (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_value bigint  NOT NULL CHECK (last_value >= 0)
);

-- The CloudEvent an event row is published as, byte for byte, every time it is published.
-- `source_json` is the configured source as a JSON string.
-- The contract is contracts.events.OutplanEvent: tests/integration/test_wire_events.py proves
-- these bytes equal to its model_dump_json (the write statement in worker/persistence/batch_write.py).
CREATE FUNCTION outplan_event_body(event_id uuid, source_json text, event_type text, outplan_id uuid,
                                   occurred_at timestamptz, customer_id uuid, outplan_version integer,
                                   eventsequence bigint, data text)
RETURNS bytea LANGUAGE sql STABLE AS $$
    SELECT convert_to(format(
        '{"specversion":"1.0","id":"%s","source":%s,"type":"%s","subject":"%s","time":"%s",'
        '"datacontenttype":"application/json","customerid":"%s","outplanversion":%s,'
        '"eventsequence":%s,"data":%s}',
        event_id, source_json, event_type, outplan_id,
        to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        customer_id, outplan_version, eventsequence, data), 'UTF8')
$$;

-- Events committed before this upgrade and not yet numbered are numbered now, in insertion
-- order, with the source the migrating process is configured with.
INSERT INTO event_sequence (last_value) SELECT coalesce(max(eventsequence), 0) FROM outplan_events;

UPDATE outplan_events e SET
    eventsequence = s.last_value + n.k,
    body = outplan_event_body(e.event_id,
                              to_json(coalesce(nullif(current_setting('outplan.event_source', true), ''),
                                               'outplan-worker'))::text,
                              e.event_type, e.outplan_id, e.occurred_at, e.customer_id, e.outplan_version,
                              s.last_value + n.k, e.data)
FROM (SELECT position, row_number() OVER (ORDER BY position) AS k
      FROM outplan_events WHERE eventsequence IS NULL) AS n,
     event_sequence s
WHERE e.position = n.position;

UPDATE event_sequence SET last_value = (SELECT coalesce(max(eventsequence), 0) FROM outplan_events);

DROP INDEX outplan_events_unsequenced;
ALTER TABLE outplan_events ALTER COLUMN eventsequence SET NOT NULL, ALTER COLUMN body SET NOT NULL;
