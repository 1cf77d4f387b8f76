"""The benchmark's targets block: each bound comes from the run's own references, and a verdict
is "met" only when the measure is there and within it."""

import copy
import json
import math
from typing import Any

import pytest

from bench.common import json_safe
from bench.targets import Target, is_flat, targets

pytestmark = pytest.mark.unit


def results() -> dict[str, Any]:
    """A run where every target is met, with round figures to compute the bounds by hand."""
    return {
        "ceiling_per_second": 2000.0,
        "ceiling_cpu_ms_per_message": 0.5,
        "worker_one_per_second": 1900.0,
        "worker_one_cpu_ms_per_command": 0.45,
        "peak_rss_mb": 120.0,
        "floor_at_500": {"p50_ms": 2.8, "p99_ms": 10.0, "lost": 0},
        "events_at_500": {"p50_ms": 7.0, "p99_ms": 14.0, "lost": 0},
        "rpc_outplan.get_at_500": {"p50_ms": 4.0, "p99_ms": 12.0, "lost": 0},
        "commit_alone_at_500": {"p50_ms": 1.5, "p99_ms": 3.0, "lost": 0},
        "sustained": {
            "seconds": 60,
            "floor_flat_rate": 1000,
            "floor_ladder": [{"rate": 500, "flat": True}, {"rate": 1000, "flat": True}],
            "worker": {
                "rate": 800,
                "lost": 0,
                "segments": [{"p99_ms": 10.0}, {"p99_ms": 11.0}, {"p99_ms": 15.0}],
            },
        },
    }


def by_name(found: list[Target]) -> dict[str, Target]:
    return {t.name: t for t in found}


def test_every_target_is_reported_met_on_a_good_run() -> None:
    found = targets(results())
    assert [t.name for t in found] == [
        "CPU per command, worker x1 at saturation",
        "events at 500/s, p50",
        "events at 500/s, p99",
        "RPC get at 500/s, p50",
        "RPC get at 500/s, p99",
        "saturation, worker x1",
        "peak RSS at saturation",
        "sustained load, worker p99 last vs first",
    ]
    assert [t.verdict for t in found] == ["met"] * 8


def test_bounds_are_computed_from_the_same_run() -> None:
    found = by_name(targets(results()))
    assert found["CPU per command, worker x1 at saturation"].bound == pytest.approx(0.5)
    assert found["events at 500/s, p50"].bound == pytest.approx(7.8)
    assert found["events at 500/s, p50"].bound_text == "floor p50 2.80 ms + 5 ms = 7.80 ms"
    assert found["events at 500/s, p99"].bound == pytest.approx(15.0)
    assert found["RPC get at 500/s, p50"].bound == pytest.approx(4.8)
    assert found["RPC get at 500/s, p99"].bound == pytest.approx(15.0)
    assert found["saturation, worker x1"].bound == pytest.approx(1800.0)
    assert found["saturation, worker x1"].bound_text == "0.9 x ceiling 2,000/s = 1,800/s"
    assert found["peak RSS at saturation"].bound == 150.0
    assert found["sustained load, worker p99 last vs first"].bound == pytest.approx(15.0)


@pytest.mark.parametrize(
    ("p50", "verdict"),
    [(7.8, "met"), (7.79, "met"), (7.81, "NOT met"), (math.inf, "NOT met")],
)
def test_event_p50_at_the_bound_is_met_just_above_is_not(p50: float, verdict: str) -> None:
    run = results()
    run["events_at_500"]["p50_ms"] = p50  # the floor's 2.8 + 5
    assert by_name(targets(run))["events at 500/s, p50"].verdict == verdict


@pytest.mark.parametrize(("p99", "verdict"), [(15.0, "met"), (15.01, "NOT met")])
def test_rpc_p99_against_one_and_a_half_floor_p99(p99: float, verdict: str) -> None:
    run = results()
    run["rpc_outplan.get_at_500"]["p99_ms"] = p99
    assert by_name(targets(run))["RPC get at 500/s, p99"].verdict == verdict


@pytest.mark.parametrize(("rate", "verdict"), [(1800.0, "met"), (1799.0, "NOT met")])
def test_saturation_is_a_lower_bound(rate: float, verdict: str) -> None:
    run = results()
    run["worker_one_per_second"] = rate
    assert by_name(targets(run))["saturation, worker x1"].verdict == verdict


@pytest.mark.parametrize(("cpu", "verdict"), [(0.5, "met"), (0.501, "NOT met")])
def test_cpu_per_command_at_most_the_ceilings(cpu: float, verdict: str) -> None:
    run = results()
    run["worker_one_cpu_ms_per_command"] = cpu
    assert by_name(targets(run))["CPU per command, worker x1 at saturation"].verdict == verdict


@pytest.mark.parametrize(("rss", "verdict"), [(150.0, "met"), (151.0, "NOT met")])
def test_peak_rss(rss: float, verdict: str) -> None:
    run = results()
    run["peak_rss_mb"] = rss
    assert by_name(targets(run))["peak RSS at saturation"].verdict == verdict


@pytest.mark.parametrize(
    "remove",
    [
        lambda r: r.pop("events_at_500"),
        lambda r: r.pop("floor_at_500"),
        lambda r: r["events_at_500"].pop("p50_ms"),
        lambda r: r["events_at_500"].__setitem__("p50_ms", math.nan),
        lambda r: r["events_at_500"].__setitem__("p50_ms", None),
    ],
)
def test_a_missing_measure_or_reference_is_not_measured_never_met(remove: Any) -> None:
    run = results()
    remove(run)
    target = by_name(targets(run))["events at 500/s, p50"]
    assert target.verdict == "not measured"
    assert "not measured" in target.line()


def test_each_target_is_not_measured_on_an_empty_run() -> None:
    assert {t.verdict for t in targets({})} == {"not measured"}


def test_a_floor_that_lost_commands_judges_nothing() -> None:
    run = results()
    run["floor_at_500"]["p99_ms"] = math.inf
    assert by_name(targets(run))["events at 500/s, p99"].verdict == "not measured"


def test_targets_read_back_from_saved_json_give_the_same_verdicts() -> None:
    run = results()
    run["events_at_500"]["p99_ms"] = math.inf  # lost commands: "inf" in the file
    saved = json.loads(json.dumps(json_safe(run), allow_nan=False))
    assert saved["events_at_500"]["p99_ms"] == "inf"
    assert [t.verdict for t in targets(saved)] == [t.verdict for t in targets(run)]
    assert by_name(targets(saved))["events at 500/s, p99"].verdict == "NOT met"


def test_the_gap_note_sets_the_commit_alone_beside_the_worker_floor_gap() -> None:
    found = by_name(targets(results()))
    assert found["events at 500/s, p50"].note == (
        "worker - floor = 4.20 ms; PostgreSQL commit alone p50 1.50 ms"
    )
    assert "commit alone p99 3.00 ms" in found["events at 500/s, p99"].note


def test_sustained_not_run_is_not_measured() -> None:
    run = results()
    del run["sustained"]
    target = by_name(targets(run))["sustained load, worker p99 last vs first"]
    assert (target.verdict, target.bound_text) == ("not measured", "not run (--sustained 0)")


def test_sustained_without_a_flat_floor_rate_is_not_measured() -> None:
    run = results()
    del run["sustained"]["worker"]
    run["sustained"]["floor_flat_rate"] = None
    assert by_name(targets(run))["sustained load, worker p99 last vs first"].verdict == "not measured"


@pytest.mark.parametrize(
    ("last", "lost", "verdict"), [(15.0, 0, "met"), (15.1, 0, "NOT met"), (12.0, 1, "NOT met")]
)
def test_sustained_worker_flat_means_last_within_one_and_a_half_first_and_none_lost(
    last: float, lost: int, verdict: str
) -> None:
    run = copy.deepcopy(results())
    run["sustained"]["worker"]["segments"][-1]["p99_ms"] = last
    run["sustained"]["worker"]["lost"] = lost
    assert by_name(targets(run))["sustained load, worker p99 last vs first"].verdict == verdict


@pytest.mark.parametrize(
    ("first", "last", "lost", "flat"),
    [
        (10.0, 15.0, 0, True),
        (10.0, 15.01, 0, False),
        (10.0, 5.0, 1, False),
        (10.0, math.inf, 0, False),
        (math.nan, 10.0, 0, False),
    ],
)
def test_is_flat(first: float, last: float, lost: int, flat: bool) -> None:
    assert is_flat(first, last, lost) is flat
