"""The throughput benchmark's figure: latency curves, throughput per round, sustained load.

``draw(results, path)`` writes a PNG beside the results file (same stem, ``.png``) from the dict
``bench.throughput`` builds, or the same read back from its JSON (where "inf" stands for an
infinite latency). ``figure(results)`` builds the matplotlib Figure without writing it. Needs
matplotlib (the ``bench`` extra); drawn with the Agg backend, no display.

Panels, top to bottom:

- Latency: each open-loop run's percentile curve (ms, log scale) against the percentile on a
  "nines" scale (x = -log10(1 - q): p90 at 1, p99 at 2, p99.9 at 3), so the tail gets as much
  room as the middle. The worker's events and the floor (bare relay) at each offered rate, RPC
  get, and the PostgreSQL commit alone when measured. Lost commands leave the curve where they
  begin and are counted in the legend.
- Throughput: messages or events per second per round for the ceiling relay, the bare relay,
  the baseline and the worker with one and two processes.
- Sustained load (only when the run had ``--sustained``): the p99 of each stretch of the floor's
  ladder and of the worker's run, against seconds into the run.
"""

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib.axes import Axes  # noqa: E402  (the backend is chosen first)
from matplotlib.figure import Figure  # noqa: E402

LATENCY_TITLE = "Open-loop latency: scheduled send to arrival"
THROUGHPUT_TITLE = "Throughput at saturation, per round"
SUSTAINED_TITLE = "Sustained load: p99 per stretch"


def _worker(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda r: (r.get(key) or {}).get("per_second")


def _key(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda r: r.get(key)


_THROUGHPUT: tuple[tuple[str, Callable[[dict[str, Any]], Any]], ...] = (
    ("ceiling relay", _key("ceiling_per_second")),
    ("bare relay", _key("bare_relay_per_second")),
    ("baseline", _key("baseline_per_second")),
    ("worker x1", _worker("worker_one")),
    ("worker x2", _worker("worker_two")),
)


def draw(results: dict[str, Any], path: Path) -> Path:
    """Write the figure for ``results`` as a PNG at ``path`` with its suffix made ``.png`` (pass the
    JSON's path to put it beside it); return the PNG's path."""
    png = path.with_suffix(".png")
    figure(results).savefig(png, format="png", dpi=100)
    return png


def figure(results: dict[str, Any]) -> Figure:
    """The Figure: a latency panel and a throughput panel, and a sustained-load panel when
    ``results`` has ``sustained``. Each panel's title is one of the ``*_TITLE`` constants."""
    sustained = results.get("sustained")
    panels = 3 if isinstance(sustained, dict) else 2
    fig = Figure(figsize=(12, 4.6 * panels), layout="constrained")
    axes = fig.subplots(panels, 1, squeeze=False)[:, 0]
    _latency(axes[0], results)
    _throughput(axes[1], results)
    if isinstance(sustained, dict):
        _sustained(axes[2], sustained)
    fig.suptitle(f"bench.throughput (prefetch {results.get('prefetch', '?')})")
    return fig


def _nines(q: float) -> float:
    return -math.log10(1.0 - q)


def _latency(ax: Axes, results: dict[str, Any]) -> None:
    series: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    rates = sorted(
        {int(m.group(1)) for key in results if (m := re.fullmatch(r"(?:events|floor)_at_(\d+)", key))}
    )
    colours = {rate: f"C{i}" for i, rate in enumerate(rates)}
    for rate in rates:
        style: dict[str, Any] = {"color": colours[rate]}
        if f"events_at_{rate}" in results:
            series.append((f"worker events at {rate}/s", results[f"events_at_{rate}"], style))
        if f"floor_at_{rate}" in results:
            series.append(
                (f"floor (bare relay) at {rate}/s", results[f"floor_at_{rate}"], style | {"ls": "--"})
            )
    for key, value in results.items():
        if m := re.fullmatch(r"rpc_outplan\.get_at_(\d+)", key):
            series.append((f"RPC get at {m.group(1)}/s", value, {"color": "C4", "ls": "-."}))
        elif m := re.fullmatch(r"commit_alone_at_(\d+)", key):
            series.append((f"PostgreSQL commit alone at {m.group(1)}/s", value, {"color": "C7", "ls": ":"}))
    for label, summary, style in series:
        points = [(float(q), float(ms)) for q, ms in summary.get("curve", []) if float(q) < 1.0]
        if not points:
            continue
        lost = int(float(summary.get("lost", 0) or 0))
        ys = [ms if math.isfinite(ms) else math.nan for _, ms in points]
        ax.plot(
            [_nines(q) for q, _ in points],
            ys,
            label=label + (f" ({lost} lost)" if lost else ""),
            **style,
        )
    ticks = (0.5, 0.75, 0.9, 0.99, 0.999)
    ax.set_xticks([_nines(q) for q in ticks], [f"p{100 * q:g}" for q in ticks])
    ax.set_xlim(0, _nines(0.999) * 1.02)
    ax.set_yscale("log")
    ax.set_xlabel('percentile ("nines" scale: -log10(1 - q))')
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title(LATENCY_TITLE)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _throughput(ax: Axes, results: dict[str, Any]) -> None:
    rounds = results.get("rounds") or []
    width = 0.8 / len(_THROUGHPUT)
    for i, (label, value) in enumerate(_THROUGHPUT):
        xs = [n + (i - (len(_THROUGHPUT) - 1) / 2) * width for n in range(len(rounds))]
        ys = [float(value(r) or math.nan) for r in rounds]
        bars = ax.bar(xs, ys, width, label=label, color=f"C{i}")
        ax.bar_label(bars, fmt="{:,.0f}", fontsize="x-small", padding=2)
    ax.set_xticks(range(len(rounds)), [f"round {n + 1}" for n in range(len(rounds))])
    ax.set_ylabel("messages or events per second")
    ax.set_title(THROUGHPUT_TITLE)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _sustained(ax: Axes, sustained: dict[str, Any]) -> None:
    runs: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        (f"floor at {step['rate']}/s", step, {"ls": "--"}) for step in sustained.get("floor_ladder", [])
    ]
    if isinstance(sustained.get("worker"), dict):
        worker = sustained["worker"]
        runs.append((f"worker at {worker['rate']}/s", worker, {"lw": 2.5, "color": "k"}))
    for label, run, style in runs:
        segments = run.get("segments", [])
        xs = [(float(s["from_s"]) + float(s["to_s"])) / 2 for s in segments]
        ys = [float(s["p99_ms"]) if math.isfinite(float(s["p99_ms"])) else math.nan for s in segments]
        flat = "flat" if run.get("flat") else "not flat"
        ax.plot(xs, ys, marker="o", label=f"{label} ({flat})", **style)
    ax.set_yscale("log")
    ax.set_xlabel("seconds into the run (middle of each stretch)")
    ax.set_ylabel("p99 latency (ms, log scale)")
    ax.set_title(SUSTAINED_TITLE)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
