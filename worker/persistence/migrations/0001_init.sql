-- Outplans, the event log (which is also the outbox), and the idempotency record.

CREATE TABLE outplans (
    id                  uuid PRIMARY KEY,
    customer_id         uuid        NOT NULL,
    name                text        NOT NULL CHECK (char_length(name) <= 255),
    detail              text        NOT NULL CHECK (char_length(detail) <= 4096),
    source_type         text        NOT NULL CHECK (source_type IN ('tel', 'sip')),
    source_target       text        NOT NULL CHECK (char_length(source_target) <= 255),
    source_target_name  text        NOT NULL CHECK (char_length(source_target_name) <= 255),
    source_name         text        NOT NULL CHECK (char_length(source_name) <= 255),
    source_detail       text        NOT NULL CHECK (char_length(source_detail) <= 255),
    dial_timeout        integer     NOT NULL CHECK (dial_timeout BETWEEN 1000 AND 600000),
    try_interval        integer     NOT NULL CHECK (try_interval BETWEEN 1000 AND 604800000),
    max_try_count_0     smallint    NOT NULL CHECK (max_try_count_0 BETWEEN 0 AND 100),
    max_try_count_1     smallint    NOT NULL CHECK (max_try_count_1 BETWEEN 0 AND 100),
    max_try_count_2     smallint    NOT NULL CHECK (max_try_count_2 BETWEEN 0 AND 100),
    max_try_count_3     smallint    NOT NULL CHECK (max_try_count_3 BETWEEN 0 AND 100),
    max_try_count_4     smallint    NOT NULL CHECK (max_try_count_4 BETWEEN 0 AND 100),
    version             integer     NOT NULL CHECK (version >= 1),
    tm_create           timestamptz NOT NULL,
    tm_update           timestamptz NOT NULL,
    tm_delete           timestamptz
);

-- Serves the list query: live outplans of one customer, newest first, paged on (tm_create, id).
CREATE INDEX outplans_live_by_customer ON outplans (customer_id, tm_create DESC, id DESC)
    WHERE tm_delete IS NULL;

-- The event log. `position` is the insertion order; `eventsequence` is given by the relay,
-- under its lock, only to committed rows, so publish order never skips a late committer.
CREATE TABLE outplan_events (
    position        bigserial   PRIMARY KEY,
    event_id        uuid        NOT NULL UNIQUE,
    event_type      text        NOT NULL
                    CHECK (event_type IN ('outplan_created', 'outplan_updated', 'outplan_deleted')),
    outplan_id      uuid        NOT NULL,
    customer_id     uuid        NOT NULL,
    outplan_version integer     NOT NULL,
    correlation_id  text,
    occurred_at     timestamptz NOT NULL,
    data            text        NOT NULL,
    eventsequence   bigint      UNIQUE,
    body            bytea,
    published_at    timestamptz,
    UNIQUE (outplan_id, outplan_version),
    CHECK ((eventsequence IS NULL) = (body IS NULL)),
    CHECK (published_at IS NULL OR eventsequence IS NOT NULL)
);

CREATE INDEX outplan_events_unsequenced ON outplan_events (position) WHERE eventsequence IS NULL;
CREATE INDEX outplan_events_unpublished ON outplan_events (eventsequence)
    WHERE eventsequence IS NOT NULL AND published_at IS NULL;

-- The idempotency record: one row per (customer, message_id) of an applied mutation,
-- holding the reply that was given so that a redelivery or a retry gets it again.
CREATE TABLE processed_commands (
    customer_id  uuid        NOT NULL,
    message_id   text        NOT NULL,
    command      text        NOT NULL,
    body_hash    bytea       NOT NULL,
    status_code  smallint,
    reply        bytea,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, message_id)
);

CREATE INDEX processed_commands_age ON processed_commands (processed_at);
