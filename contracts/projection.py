"""A local copy of outplans kept current from events: duplicates and stale versions are ignored,
gaps are reported. Pure Python; persist ``outplans`` and ``versions`` however you like.

With OpenTelemetry installed, applying an event continues the trace of the command that caused it
(``contracts.tracing.processing``); without it, nothing is traced.
"""

from dataclasses import dataclass, field
from enum import StrEnum
from uuid import UUID

from . import names, tracing
from .events import OutplanCreated, OutplanDeleted, OutplanUpdated
from .outplan import Outplan

AnyEvent = OutplanCreated | OutplanUpdated | OutplanDeleted


class Applied(StrEnum):
    """What ``Projection.apply`` did with an event."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"  # this event id was seen before (applied, or found stale)
    STALE = "stale"  # an older version than the copy already holds
    AFTER_GAP = "after_gap"  # applied, but versions in between were never seen


@dataclass(frozen=True)
class Gap:
    """Versions ``missing_from`` to ``missing_to`` (inclusive) of ``outplan_id`` were never seen:
    an event with a later version came first. Its ``data`` is the whole outplan, so the copy is
    current; only the changes in between were missed."""

    outplan_id: UUID
    missing_from: int
    missing_to: int


@dataclass
class Projection:
    """Live outplans by id; deleted ones leave ``outplans`` but keep their last version.

    ``versions`` holds each outplan's last applied ``outplanversion``, ``seen_ids`` every event id
    applied or refused (it only grows), ``gaps`` the versions skipped, in the order found.
    ``destination`` is the queue (or exchange) the events are consumed from: it names the
    ``process <destination>`` span each ``apply`` runs in when OpenTelemetry is installed.
    """

    outplans: dict[UUID, Outplan] = field(default_factory=dict)
    versions: dict[UUID, int] = field(default_factory=dict)
    seen_ids: set[UUID] = field(default_factory=set)
    gaps: list[Gap] = field(default_factory=list)
    destination: str = names.EVENT_EXCHANGE

    def apply(self, event: AnyEvent) -> Applied:
        """Apply one event: ``DUPLICATE`` for an event id seen before and ``STALE`` for a version
        not newer than the copy's change nothing; else the copy takes ``data`` (or drops the
        outplan, for ``outplan_deleted``), ``AFTER_GAP`` when versions were skipped (recorded in
        ``gaps``), ``APPLIED`` otherwise.

        Runs in a CONSUMER span ``process <destination>`` whose parent is the event's
        ``traceparent`` (see ``contracts.tracing.processing``), with the result as the span's
        ``outplan.projection.result`` attribute, when OpenTelemetry is installed."""
        with tracing.processing(event, self.destination) as span:
            result = self._apply(event)
            if span is not None:
                span.set_attribute("outplan.projection.result", result.value)
            return result

    def _apply(self, event: AnyEvent) -> Applied:
        if event.id in self.seen_ids:
            return Applied.DUPLICATE
        self.seen_ids.add(event.id)
        current = self.versions.get(event.subject, 0)
        if event.outplanversion <= current:
            return Applied.STALE
        result = Applied.APPLIED
        if event.outplanversion > current + 1:
            self.gaps.append(Gap(event.subject, current + 1, event.outplanversion - 1))
            result = Applied.AFTER_GAP
        self.versions[event.subject] = event.outplanversion
        if isinstance(event, OutplanDeleted):
            self.outplans.pop(event.subject, None)
        else:
            self.outplans[event.subject] = event.data
        return result
