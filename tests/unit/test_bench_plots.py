"""The throughput benchmark's figure: a PNG with the latency, throughput and (when run)
sustained-load panels, each series named in its legend."""

import json
import math
import struct
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")

from matplotlib.patches import Rectangle  # noqa: E402

from bench.common import json_safe  # noqa: E402  (after the skip: plots needs matplotlib)
from bench.plots import LATENCY_TITLE, SUSTAINED_TITLE, THROUGHPUT_TITLE, draw, figure  # noqa: E402

pytestmark = pytest.mark.unit

QUANTILES = [0.01, 0.1, 0.5, 0.9, 0.99, 0.999]


def summary(base_ms: float, lost: int = 0) -> dict[str, Any]:
    curve = [[q, base_ms * (1 + 10 * q**4)] for q in QUANTILES] + [[1.0, base_ms * 20]]
    if lost:
        curve[-2][1] = curve[-1][1] = math.inf
    return {"p50_ms": base_ms, "p99_ms": base_ms * 10, "lost": lost, "curve": curve}


def one_round(scale: float) -> dict[str, Any]:
    return {
        "ceiling_per_second": 2100 * scale,
        "bare_relay_per_second": 2600 * scale,
        "baseline_per_second": 300 * scale,
        "worker_one": {"per_second": 1800 * scale},
        "worker_two": {"per_second": 1900 * scale},
    }


def results(sustained: bool) -> dict[str, Any]:
    run: dict[str, Any] = {
        "prefetch": 300,
        "rounds": [one_round(1.0), one_round(0.9)],
        "floor_at_500": summary(2.0),
        "floor_at_1000": summary(2.5),
        "commit_alone_at_500": summary(1.0),
        "events_at_500": summary(5.0),
        "events_at_1000": summary(6.0, lost=3),
        "rpc_outplan.get_at_500": summary(3.0),
        "rpc_outplan.create_at_500": summary(4.0),
    }
    if sustained:
        segments = [{"from_s": 2 * k, "to_s": 2 * k + 2, "p99_ms": 10.0 + k} for k in range(5)]
        run["sustained"] = {
            "seconds": 10,
            "floor_flat_rate": 500,
            "floor_ladder": [
                {"rate": 500, "flat": True, "segments": segments},
                {"rate": 750, "flat": False, "segments": segments},
            ],
            "worker": {"rate": 400, "flat": True, "segments": segments},
        }
    return run


def legend(fig: Any, title: str) -> list[str]:
    (ax,) = [ax for ax in fig.axes if ax.get_title() == title]
    return [text.get_text() for text in ax.get_legend().get_texts()]


def test_the_latency_panel_names_each_run_and_counts_the_lost() -> None:
    fig = figure(results(sustained=False))
    assert legend(fig, LATENCY_TITLE) == [
        "worker events at 500/s",
        "floor (bare relay) at 500/s",
        "worker events at 1000/s (3 lost)",
        "floor (bare relay) at 1000/s",
        "PostgreSQL commit alone at 500/s",
        "RPC get at 500/s",
    ]
    (ax,) = [ax for ax in fig.axes if ax.get_title() == LATENCY_TITLE]
    assert ax.get_yscale() == "log"
    assert "ms" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["p50", "p75", "p90", "p99", "p99.9"]


def test_the_throughput_panel_has_each_relay_per_round() -> None:
    fig = figure(results(sustained=False))
    assert legend(fig, THROUGHPUT_TITLE) == [
        "ceiling relay",
        "bare relay",
        "baseline",
        "worker x1",
        "worker x2",
    ]
    (ax,) = [ax for ax in fig.axes if ax.get_title() == THROUGHPUT_TITLE]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["round 1", "round 2"]
    heights = sorted(round(p.get_height()) for p in ax.patches if isinstance(p, Rectangle))
    assert heights[0] == 270 and heights[-1] == 2600  # baseline in round 2, bare relay in round 1


def test_the_sustained_panel_is_drawn_only_when_the_run_had_one() -> None:
    assert [ax.get_title() for ax in figure(results(sustained=False)).axes] == [
        LATENCY_TITLE,
        THROUGHPUT_TITLE,
    ]
    fig = figure(results(sustained=True))
    assert [ax.get_title() for ax in fig.axes] == [LATENCY_TITLE, THROUGHPUT_TITLE, SUSTAINED_TITLE]
    assert legend(fig, SUSTAINED_TITLE) == [
        "floor at 500/s (flat)",
        "floor at 750/s (not flat)",
        "worker at 400/s (flat)",
    ]


@pytest.mark.parametrize(("sustained", "height"), [(False, 920), (True, 1380)])
def test_draw_writes_a_png_beside_the_json(tmp_path: Path, sustained: bool, height: int) -> None:
    json_path = tmp_path / "throughput-20261130T120000.json"
    saved = json.loads(json.dumps(json_safe(results(sustained)), allow_nan=False))  # as read back
    png = draw(saved, json_path)
    assert png == tmp_path / "throughput-20261130T120000.png"
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, tall = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, tall) == (1200, height)
    assert 30_000 < len(data) < 1_500_000
