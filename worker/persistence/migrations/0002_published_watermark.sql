-- The relay's progress is one number instead of a mark on every event: every event with a
-- sequence at or below `published_through` was confirmed by the broker. Confirms are recorded
-- only for a gap-free prefix, so the marks always were such a prefix; one number says the same
-- and spares each event a second full-row update (and its index entries).
CREATE TABLE outbox_state (
    singleton         boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    published_through bigint  NOT NULL CHECK (published_through >= 0)
);

INSERT INTO outbox_state (published_through)
SELECT coalesce(max(eventsequence) FILTER (WHERE published_at IS NOT NULL), 0) FROM outplan_events;

-- Its partial index and its check go with it.
ALTER TABLE outplan_events DROP COLUMN published_at;
