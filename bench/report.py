"""The suite's table: one row per benchmark of issue 8, its target, and whether Berth meets it.

A row's ``score`` is how far the measure is from its target, lower being better: 1.0 is the target
exactly, so the row passes when the score is at most 1. The chart draws the scores (and, where
Docker ran, the ratio Berth/Docker) on a log scale.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Row:
    benchmark: str
    berth: str
    docker: str = ""
    ratio: float | None = None  # Berth / Docker
    target: str = ""
    score: float | None = None  # measure / target, lower is better; None: reported only
    note: str = ""
    error: str = ""
    values: dict = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        if self.error:
            return "error"
        if self.score is None:
            return "report"
        return "pass" if self.score <= 1.0 else "miss"


def failed(benchmark: str, target: str, error: BaseException | str) -> Row:
    return Row(benchmark, "", target=target, error=str(error).strip().splitlines()[-1][:200] if str(error) else
               type(error).__name__)


def print_table(rows: list[Row]) -> None:
    headers = ("benchmark", "Berth", "Docker", "Berth/Docker", "target", "verdict")
    cells = [(r.benchmark, r.berth if not r.error else f"ERROR: {r.error}", r.docker,
              "" if r.ratio is None else f"{r.ratio:.2f}", r.target, r.verdict) for r in rows]
    widths = [max(len(str(c[i])) for c in [headers, *cells]) for i in range(len(headers))]
    line = lambda values: "| " + " | ".join(str(v).ljust(w) for v, w in zip(values, widths)) + " |"
    print(line(headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for values in cells:
        print(line(values))
    for row in rows:
        if row.note:
            print(f"  {row.benchmark}: {row.note}")


def write_json(path: Path, rows: list[Row], meta: dict, raw: dict) -> None:
    path.write_text(json.dumps({"meta": meta, "rows": [asdict(r) | {"verdict": r.verdict} for r in rows],
                                "raw": raw}, indent=2, default=str) + "\n")


def draw_chart(path: Path, rows: list[Row], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot

    scored = [r for r in rows if r.score is not None and not r.error]
    compared = [r for r in rows if r.ratio is not None and not r.error]
    figure, axes = pyplot.subplots(1, 2, figsize=(13, 0.45 * max(len(scored), len(compared), 4) + 1.6),
                                   gridspec_kw={"width_ratios": [3, 2]})
    _bars(axes[0], [r.benchmark for r in scored], [r.score for r in scored],
          ["#2e7d32" if r.verdict == "pass" else "#c62828" for r in scored],
          "measure / target (at most 1 meets it)")
    _bars(axes[1], [r.benchmark for r in compared], [r.ratio for r in compared], ["#1565c0"] * len(compared),
          "Berth / Docker (below 1: Berth is better)")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def _bars(axis, labels: list[str], values: list[float], colours: list[str], xlabel: str) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator

    positions = list(range(len(labels)))
    shown = [min(max(value, 0.01), 100.0) for value in values]  # an unmeasurable value stays on the chart
    low = min([0.1, *shown]) / 1.5
    axis.barh(positions, [value - low for value in shown], left=low, color=colours)
    axis.set_yticks(positions, [_short(label) for label in labels], fontsize=8)
    axis.invert_yaxis()
    axis.set_xscale("log")
    axis.set_xlim(low, max([2.0, *shown]) * 2)
    ticks = [t for t in (0.01, 0.03, 0.1, 0.25, 0.5, 1, 2, 4, 10, 30, 100) if low <= t <= max([2.0, *shown]) * 2]
    axis.xaxis.set_major_locator(FixedLocator(ticks))
    axis.xaxis.set_minor_locator(NullLocator())
    axis.set_xticklabels([f"{t:g}" for t in ticks], fontsize=8)
    axis.axvline(1.0, color="black", linewidth=0.8)
    axis.set_xlabel(xlabel, fontsize=9)
    for position, value, drawn in zip(positions, values, shown):
        axis.text(drawn, position, f" {value:.2f}", va="center", fontsize=7)


def _short(label: str, width: int = 46) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"
