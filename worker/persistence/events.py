"""The event log, which is also the outbox: rows are written with the change (see ``changes``)
and published later by the relay, which the commit wakes through this channel."""

NOTIFY_CHANNEL = "outplan_events"
