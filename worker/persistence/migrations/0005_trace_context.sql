-- The W3C trace context of the command that caused each event (the CloudEvents distributed
-- tracing extension), stored with it so that every publish of the event, a replay included,
-- carries the same values, in its body and in its AMQP headers. NULL: written without one.
ALTER TABLE outplan_events ADD COLUMN traceparent text, ADD COLUMN tracestate text;

-- outplan_event_body (0004) with the two attributes: "traceparent" and "tracestate" after
-- "eventsequence" and before "data", each only when not NULL, as contracts.events.OutplanEvent
-- serialises them (absent, never null). Strings are escaped by to_json, as pydantic escapes them
-- (", \ and control characters; nothing else): tests/integration/test_wire_events.py proves the
-- bodies equal to model_dump_json, with and without trace context. 0004's function stays as it is.
CREATE FUNCTION outplan_traced_event_body(event_id uuid, source_json text, event_type text, outplan_id uuid,
                                          occurred_at timestamptz, customer_id uuid, outplan_version integer,
                                          eventsequence bigint, traceparent text, tracestate text, data text)
RETURNS bytea LANGUAGE sql STABLE AS $$
    SELECT convert_to(format(
        '{"specversion":"1.0","id":"%s","source":%s,"type":"%s","subject":"%s","time":"%s",'
        '"datacontenttype":"application/json","customerid":"%s","outplanversion":%s,'
        '"eventsequence":%s%s%s,"data":%s}',
        event_id, source_json, event_type, outplan_id,
        to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        customer_id, outplan_version, eventsequence,
        ',"traceparent":' || to_json(traceparent)::text,
        ',"tracestate":' || to_json(tracestate)::text,
        data), 'UTF8')
$$;
