"""The worker's performance targets, each judged against a bound taken from the same run.

``targets(results)`` reads the dict that ``bench.throughput`` builds (and saves as JSON) and
returns one ``Target`` per goal: what was measured, the bound this run's own reference gives
(the ceiling relay for throughput and CPU, the bare-relay floor for latency), and a verdict.
Nothing here measures; it is arithmetic on the results, so it can be checked on made-up ones.

A measure that is missing, None or NaN, or whose reference is, is "not measured", never met.
A lost command makes a latency infinite, which meets no bound; a reference that lost commands
gives an infinite bound, which judges nothing, so that target is "not measured" too.
"""

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

Verdict = Literal["met", "NOT met", "not measured"]

# Latency targets at this offered rate (commands per second).
RATE = 500
# The worker's peak resident set at saturation, MB.
RSS_LIMIT_MB = 150.0
# "Flat": the p99 of the last stretch at most this many times that of the first, nothing lost.
FLAT_FACTOR = 1.5


@dataclass(frozen=True)
class Target:
    """One goal. ``measured`` and ``bound`` are in ``unit`` (None when not measured); ``bound_text``
    says how the bound was computed from this run; ``note`` adds what a reader needs beside it."""

    name: str
    unit: str
    measured: float | None
    bound: float | None
    bound_text: str
    verdict: Verdict
    note: str = ""

    def line(self) -> str:
        """One printable line: name, measured value, the bound and how it was got, the verdict."""
        measured = "-" if self.measured is None else _fmt(self.measured, self.unit)
        text = f"{self.name:<46}{measured:>12}  vs {self.bound_text:<44} {self.verdict}"
        return text + (f"  ({self.note})" if self.note else "")

    def as_dict(self) -> dict[str, Any]:
        """The fields as a dict, for the results' JSON (under "targets")."""
        return asdict(self)


def is_flat(first_p99_ms: float, last_p99_ms: float, lost: int) -> bool:
    """A stretch of load held flat: nothing lost, and the p99 of its last part (ms) at most
    ``FLAT_FACTOR`` times that of its first. False when either p99 is not a finite number."""
    if lost or not (_finite(first_p99_ms) and _finite(last_p99_ms)):
        return False
    return _at_most(last_p99_ms, FLAT_FACTOR * first_p99_ms)


def targets(results: dict[str, Any]) -> list[Target]:
    """The targets, in a fixed order, judged on ``results`` (``bench.throughput``'s dict: medians
    across rounds for throughput, CPU and RSS; ``events_at_500``, ``floor_at_500`` and
    ``rpc_outplan.get_at_500`` summaries in ms; ``commit_alone_at_500``; ``sustained``)."""
    floor = _get(results, f"floor_at_{RATE}")
    events = _get(results, f"events_at_{RATE}")
    rpc = _get(results, f"rpc_outplan.get_at_{RATE}")
    commit = _get(results, f"commit_alone_at_{RATE}")
    ceiling_cpu = _num(results.get("ceiling_cpu_ms_per_message"))
    ceiling_rate = _num(results.get("ceiling_per_second"))
    floor_p50, floor_p99 = _num(floor.get("p50_ms")), _num(floor.get("p99_ms"))

    found = [
        _upper(
            "CPU per command, worker x1 at saturation",
            "ms",
            _num(results.get("worker_one_cpu_ms_per_command")),
            None if ceiling_cpu is None else 1.0 * ceiling_cpu,
            "1.0 x ceiling relay {ref} = {bound}",
            ceiling_cpu,
        ),
        _upper(
            f"events at {RATE}/s, p50",
            "ms",
            _num(events.get("p50_ms")),
            None if floor_p50 is None else floor_p50 + 5.0,
            "floor p50 {ref} + 5 ms = {bound}",
            floor_p50,
            note=_gap_note("p50", events, floor, commit),
        ),
        _upper(
            f"events at {RATE}/s, p99",
            "ms",
            _num(events.get("p99_ms")),
            None if floor_p99 is None else FLAT_FACTOR * floor_p99,
            "1.5 x floor p99 {ref} = {bound}",
            floor_p99,
            note=_gap_note("p99", events, floor, commit),
        ),
        _upper(
            f"RPC get at {RATE}/s, p50",
            "ms",
            _num(rpc.get("p50_ms")),
            None if floor_p50 is None else floor_p50 + 2.0,
            "floor p50 {ref} + 2 ms = {bound}",
            floor_p50,
        ),
        _upper(
            f"RPC get at {RATE}/s, p99",
            "ms",
            _num(rpc.get("p99_ms")),
            None if floor_p99 is None else FLAT_FACTOR * floor_p99,
            "1.5 x floor p99 {ref} = {bound}",
            floor_p99,
        ),
        _lower(
            "saturation, worker x1",
            "/s",
            _num(results.get("worker_one_per_second")),
            None if ceiling_rate is None else 0.9 * ceiling_rate,
            "0.9 x ceiling {ref} = {bound}",
            ceiling_rate,
        ),
        _upper(
            "peak RSS at saturation",
            "MB",
            _num(results.get("peak_rss_mb")),
            RSS_LIMIT_MB,
            "{bound} (fixed)",
            RSS_LIMIT_MB,
        ),
        _sustained(results.get("sustained")),
    ]
    return found


def _sustained(sustained: Any) -> Target:
    """The worker at 0.8 x the floor's highest flat rate: the p99 of its last stretch against 1.5 x
    that of its first, and nothing lost."""
    name = "sustained load, worker p99 last vs first"
    if not isinstance(sustained, dict):
        return Target(name, "ms", None, None, "not run (--sustained 0)", "not measured")
    worker = sustained.get("worker")
    if not isinstance(worker, dict):
        rates = [step.get("rate") for step in sustained.get("floor_ladder", [])]
        return Target(
            name, "ms", None, None, f"no flat floor rate among {rates}", "not measured", "worker not run"
        )
    segments = worker.get("segments") or []
    first = _num(segments[0].get("p99_ms")) if segments else None
    last = _num(segments[-1].get("p99_ms")) if segments else None
    lost = int(_num(worker.get("lost")) or 0)
    note = (
        f"at {worker.get('rate')}/s = 0.8 x floor's flat {sustained.get('floor_flat_rate')}/s,"
        f" {len(segments)} stretches, {lost} lost"
    )
    if first is None or last is None:
        return Target(name, "ms", last, None, "1.5 x first p99", "not measured", note)
    bound = FLAT_FACTOR * first
    text = f"1.5 x first p99 {_fmt(first, 'ms')} = {_fmt(bound, 'ms')}"
    if not _finite(first):
        return Target(name, "ms", last, bound, text, "not measured", note + "; first stretch lost commands")
    verdict: Verdict = "met" if is_flat(first, last, lost) else "NOT met"
    return Target(name, "ms", last, bound, text, verdict, note)


def _upper(
    name: str,
    unit: str,
    measured: float | None,
    bound: float | None,
    how: str,
    ref: float | None,
    note: str = "",
) -> Target:
    return _judge(name, unit, measured, bound, how, ref, note, upper=True)


def _lower(
    name: str, unit: str, measured: float | None, bound: float | None, how: str, ref: float | None
) -> Target:
    return _judge(name, unit, measured, bound, how, ref, "", upper=False)


def _judge(
    name: str,
    unit: str,
    measured: float | None,
    bound: float | None,
    how: str,
    ref: float | None,
    note: str,
    *,
    upper: bool,
) -> Target:
    text = how.format(
        ref="-" if ref is None else _fmt(ref, unit), bound="-" if bound is None else _fmt(bound, unit)
    )
    verdict: Verdict
    if measured is None or bound is None:
        verdict = "not measured"
    elif not _finite(bound):
        verdict, note = "not measured", "; ".join(filter(None, [note, "the reference lost commands"]))
    elif not _finite(measured):
        verdict = "NOT met"
    else:
        verdict = "met" if (_at_most(measured, bound) if upper else _at_most(bound, measured)) else "NOT met"
    return Target(name, unit, measured, bound, text, verdict, note)


def _gap_note(which: str, events: dict[str, Any], floor: dict[str, Any], commit: dict[str, Any]) -> str:
    """How far the worker's ``which`` ("p50", "p99") is above the floor's, beside that of a
    PostgreSQL commit alone at the same rate (the one fsync the worker's path adds)."""
    worker, ref, alone = (_num(d.get(f"{which}_ms")) for d in (events, floor, commit))
    parts = []
    if worker is not None and ref is not None and _finite(worker) and _finite(ref):
        parts.append(f"worker - floor = {worker - ref:.2f} ms")
    if alone is not None:
        parts.append(f"PostgreSQL commit alone {which} {_fmt(alone, 'ms')}")
    return "; ".join(parts)


def _get(results: dict[str, Any], key: str) -> dict[str, Any]:
    value = results.get(key)
    return value if isinstance(value, dict) else {}


def _num(value: Any) -> float | None:
    """A number from the results: a float, or "inf" as saved JSON writes it; None for anything
    missing or NaN."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _finite(value: float) -> bool:
    return math.isfinite(value)


def _at_most(value: float, bound: float) -> bool:
    """value <= bound, with the last bits of float arithmetic forgiven (2.8 + 5 is 7.8)."""
    return value <= bound or math.isclose(value, bound, rel_tol=1e-9, abs_tol=1e-9)


def _fmt(value: float, unit: str) -> str:
    if not math.isfinite(value):
        return f"{value} {unit}".strip()
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "MB":
        return f"{value:.0f} MB"
    return f"{value:.3f} ms" if abs(value) < 1 else f"{value:.2f} ms"
