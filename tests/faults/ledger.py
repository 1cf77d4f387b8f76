"""The ledger of a fault run: what was sent, answered and published, checked against the database."""

import json
from collections import defaultdict
from dataclasses import dataclass, field, fields
from typing import Any

import asyncpg

from contracts import Reply
from worker.persistence.outplans import to_versioned


@dataclass
class Sent:
    message_id: str
    command: str
    body: dict[str, Any]
    sends: int = 1
    sent_at: float = 0.0  # loop time of the first publish
    replied_at: float | None = None  # loop time the first reply arrived


@dataclass
class Delivery:
    event_id: str
    body: bytes
    correlation_id: str = ""  # the AMQP property: the message_id of the command that caused it
    received_at: float = 0.0  # loop time it arrived

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Figures:
    commands_sent: int = 0
    commands_resent: int = 0
    faults_injected: int = 0
    replies: int = 0
    accepted: int = 0
    refused: int = 0
    events_delivered: int = 0
    events_unique: int = 0
    duplicates_by_id: int = 0
    # each of these must be 0
    unanswered: int = 0
    accepted_but_missing: int = 0
    applied_twice: int = 0
    events_without_change: int = 0
    lost_events: int = 0
    changed_on_republish: int = 0
    out_of_order_versions: int = 0
    version_gaps: int = 0
    sequence_regressions: int = 0
    final_state_mismatches: int = 0

    MUST_BE_ZERO = (
        "unanswered",
        "accepted_but_missing",
        "applied_twice",
        "events_without_change",
        "lost_events",
        "changed_on_republish",
        "out_of_order_versions",
        "version_gaps",
        "sequence_regressions",
        "final_state_mismatches",
    )

    def table(self, title: str) -> str:
        rows = [f"  {f.name:<24} {getattr(self, f.name):>8}" for f in fields(self)]
        return f"\n== ledger: {title}\n" + "\n".join(rows)

    def problems(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.MUST_BE_ZERO if getattr(self, name)}


@dataclass
class Ledger:
    sent: dict[str, Sent] = field(default_factory=dict)
    replies: dict[str, Reply] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    faults: int = 0

    def accepted(self) -> set[str]:
        return {mid for mid, reply in self.replies.items() if reply.status_code < 300}

    def reply_seconds(self, percentile: float) -> float:
        """The given percentile (0-100) of the time from first publish to first reply, in s."""
        times = sorted(s.replied_at - s.sent_at for s in self.sent.values() if s.replied_at is not None)
        if not times:
            return float("nan")
        return times[min(len(times) - 1, int(len(times) * percentile / 100))]

    def unique_event_ids(self) -> set[str]:
        return {d.event_id for d in self.deliveries}

    async def audit(self, database_url: str, customers: list[str]) -> Figures:
        conn = await asyncpg.connect(database_url)
        try:
            db_events = await conn.fetch(
                "SELECT event_id::text, correlation_id, outplan_id::text, outplan_version, eventsequence"
                " FROM outplan_events WHERE customer_id = ANY($1::uuid[])",
                customers,
            )
            db_outplans = await conn.fetch(
                "SELECT * FROM outplans WHERE customer_id = ANY($1::uuid[])", customers
            )
        finally:
            await conn.close()
        return self.compare(db_events, db_outplans)

    def compare(self, db_events: list[asyncpg.Record], db_outplans: list[asyncpg.Record]) -> Figures:
        f = Figures(faults_injected=self.faults)
        f.commands_sent = len(self.sent)
        f.commands_resent = sum(s.sends - 1 for s in self.sent.values())
        f.replies = len(self.replies)
        accepted = self.accepted()
        f.accepted = len(accepted)
        f.refused = f.replies - f.accepted
        f.unanswered = len(set(self.sent) - set(self.replies))

        by_correlation: dict[str, list[asyncpg.Record]] = defaultdict(list)
        for row in db_events:
            by_correlation[row["correlation_id"]].append(row)
        f.applied_twice = sum(1 for rows in by_correlation.values() if len(rows) > 1)
        f.accepted_but_missing = sum(1 for mid in accepted if not by_correlation.get(mid))
        refused_with_event = sum(
            1 for mid, r in self.replies.items() if r.status_code >= 300 and by_correlation.get(mid)
        )

        db_ids = {row["event_id"] for row in db_events}
        first: dict[str, Delivery] = {}
        for delivery in self.deliveries:
            if delivery.event_id in first:
                f.changed_on_republish += delivery.body != first[delivery.event_id].body
            else:
                first[delivery.event_id] = delivery
        f.events_delivered = len(self.deliveries)
        f.events_unique = len(first)
        f.duplicates_by_id = f.events_delivered - f.events_unique
        f.events_without_change = len(set(first) - db_ids) + refused_with_event
        f.lost_events = len(db_ids - set(first))

        versions_seen: dict[str, list[int]] = defaultdict(list)
        last_sequence: dict[str, int] = defaultdict(int)  # per outplan: the relay promises order per outplan
        last_data: dict[str, dict[str, Any]] = {}
        for delivery in first.values():
            event = delivery.event
            subject = event["subject"]
            versions_seen[subject].append(event["outplanversion"])
            f.sequence_regressions += event["eventsequence"] <= last_sequence[subject]
            last_sequence[subject] = max(last_sequence[subject], event["eventsequence"])
            last_data[subject] = event["data"]
        for versions in versions_seen.values():
            f.out_of_order_versions += sum(1 for i, v in enumerate(versions) if v != i + 1)

        db_versions: dict[str, list[int]] = defaultdict(list)
        for row in db_events:
            db_versions[row["outplan_id"]].append(row["outplan_version"])
        for row in db_outplans:
            outplan_id = str(row["id"])
            versions = sorted(db_versions.get(outplan_id, []))
            f.version_gaps += versions != list(range(1, row["version"] + 1))
            current = to_versioned(row).outplan.model_dump(mode="json")
            f.final_state_mismatches += last_data.get(outplan_id) != current
        return f
