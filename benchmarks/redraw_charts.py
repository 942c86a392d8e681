"""Redraw every committed chart of benchmarks/results from the JSON it was made from, through the
function the benchmark draws it with; into $PRAKIT_BENCHMARK_RESULTS when that is set.

Fails naming the JSON when one is missing, and naming the chart when a committed chart has no
JSON here to redraw it from.
Usage: python benchmarks/redraw_charts.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

import comparison
import sampling
from common import RESULTS

from prakit.eval.compare import plot_curve
from prakit.plots import bar_chart, line_plot

COMMITTED = Path(__file__).resolve().parent / "results"


def ablation_small(record: dict, stem: str) -> list[str]:
    """The charts of the first small comparison (benchmarks/ablation_small.py, since replaced by
    comparison.py): per dataset, FID bars with the std over seeds at each guidance choice, and
    the mean rollout-gap curves at the common one."""
    written = []
    for dataset in dict.fromkeys(row["data"] for row in record["rows"]):
        rows = [row for row in record["rows"] if row["data"] == dataset]
        for guidance in dict.fromkeys(row["guidance"].split(" ")[0] for row in rows):
            bars = {row["variant"]: (row["fid"], row["fid_std"])
                    for row in rows if row["guidance"].split(" ")[0] == guidance}
            written += bar_chart(bars, RESULTS / f"{stem}_{dataset}_fid_{guidance}.png", value_label="FID",
                                 title=f"{dataset}: featnet FID ({guidance} guidance), mean and std over seeds")
        curves = {row["variant"]: (range(len(row["rollout_gap_curve"])), row["rollout_gap_curve"])
                  for row in rows if row["guidance"] == "common" and row["rollout_gap_curve"]}
        written += line_plot(curves, RESULTS / f"{stem}_{dataset}_rollout_gap.png", xlabel="position", ylabel="gap",
                             title=f"{dataset}: own-input minus true-input error")
    return [path.name for path in written]


def compared_rollout_gap(record: dict, stem: str) -> list[str]:
    """The rollout-gap curves of a ``prakit compare`` record, as ``prakit compare --out`` draws them."""
    return [path.name for path in plot_curve(record, "rollout_gap", RESULTS / f"{stem}_rollout_gap.png")]


#: Each committed JSON that has charts (by its stem) and how they are drawn from it.
SOURCES: dict[str, Callable[[dict, str], list[str]]] = {
    "sampling_cpu": lambda record, stem: sampling.charts(record["rows"], stem),
    **{f"comparison_{setting}": lambda record, stem: comparison.charts(record["rows"], stem.removeprefix("comparison_"))
       for setting in comparison.SETTINGS},
    "flow_head_digits32": compared_rollout_gap,
    "ablation_small": ablation_small,
    "ablation_small_first": ablation_small,
    "ablation_small_second": ablation_small,
}


def redraw() -> list[str]:
    """Draw the charts of every source; the files written."""
    written = []
    for stem, draw in SOURCES.items():
        source = COMMITTED / f"{stem}.json"
        if not source.is_file():
            raise SystemExit(f"cannot redraw the charts of {stem}: {source} is missing")
        names = draw(json.loads(source.read_text()), stem)
        print(f"{source.name} -> {', '.join(names)}", flush=True)
        written += names
    return written


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    written = redraw()
    undrawn = sorted(path.name for path in COMMITTED.glob("*.png") if path.name not in written)
    if undrawn:
        raise SystemExit(f"no JSON in SOURCES redraws {', '.join(undrawn)}")
    print(f"redrew {len(written)} files into {RESULTS}")


if __name__ == "__main__":
    main()
