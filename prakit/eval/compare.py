"""``prakit compare``: the ablation table across evaluated runs.

Columns are the config fields that differ between the runs, then every number their
``eval.json`` holds, the parameter count and the training wall-clock. Runs that differ only
in ``train.seed`` form one row, each number as mean +- std over the seeds. The rollout-gap
curves of all rows go into one plot.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any, Sequence

from prakit.config import from_data
from prakit.config.io import flatten, read_file
from prakit.errors import PrakitError
from prakit.eval.report import cell, csv_table, markdown_table, text_table, write_json
from prakit.io import atomic_write_text
from prakit.plots import line_plot
from prakit.train.metrics import read_metrics

#: Config fields that never make two runs differ in the table (free text, and the seed, which groups).
IGNORED = ("description", "train.seed")
#: Facts of the evaluation itself that must match for numbers to be comparable.
EVALUATION_FACTS = ("reference", "features", "samples")


def differing_fields(configs: list[dict[str, Any]]) -> list[str]:
    """The flattened keys whose values differ between configs. A component whose ``name``
    differs is one column (its name): its other fields differ only where the name is the same."""
    keys = sorted({k for cfg in configs for k in cfg} - set(IGNORED))
    names = [k for k in keys if k.endswith(".name") and len({json.dumps(cfg.get(k)) for cfg in configs}) > 1]
    differing = []
    for key in keys:
        owner = next((n for n in names if key.startswith(n.removesuffix("name")) and key != n), None)
        if owner is None:
            same_owner = [configs]
        else:  # compare only among configs whose component has the same name
            same_owner = [[c for c in configs if c.get(owner) == name] for name in {c.get(owner) for c in configs}]
        if any(len({json.dumps(cfg.get(key)) for cfg in group}) > 1 for group in same_owner):
            differing.append(key)
    return differing


def train_seconds(run_dir: Path, batch_size: int) -> float | None:
    """Training wall-clock from ``metrics.jsonl``: images per log window over the window's images/s."""
    rows, seconds, last = read_metrics(run_dir / "metrics.jsonl"), 0.0, -1
    for row in rows:
        seconds += (row["step"] - last) * batch_size / row["images_per_s"]
        last = row["step"]
    return seconds if rows else None


def load_run(run_dir: Path) -> dict[str, Any]:
    """A run's flattened config, evaluation, parameter count and training time."""
    from prakit.model import parameter_counts
    from prakit.summary import meta_model

    if not (run_dir / "config.toml").is_file():
        raise PrakitError(f"{run_dir} is not a run directory (no config.toml)")
    if not (run_dir / "eval.json").is_file():
        raise PrakitError(f"{run_dir} has no eval.json: evaluate it first with `prakit eval {run_dir}`")
    data = read_file(run_dir / "config.toml")
    cfg = from_data(data)
    record = json.loads((run_dir / "eval.json").read_text())
    facts = {"reference": record["reference"]["path"], "features": ",".join(record.get("features", {})),
             "samples": record.get("samples", {}).get("count")}
    return {"run": run_dir, "config": flatten(data), "record": record, "facts": facts,
            "parameters": parameter_counts(meta_model(cfg))["total"],
            "train_seconds": train_seconds(run_dir, cfg.train.batch_size)}


def compare(run_dirs: Sequence[str | os.PathLike]) -> dict[str, Any]:
    """The comparison of the runs: differing fields, groups of seeds and their numbers."""
    if len(set(map(str, run_dirs))) < len(run_dirs):
        raise PrakitError("a run directory is named twice")
    runs = [load_run(Path(r)) for r in run_dirs]
    differing = differing_fields([run["config"] for run in runs])
    mismatched = [f for f in EVALUATION_FACTS if len({json.dumps(run["facts"][f]) for run in runs}) > 1]
    groups: dict[str, list[dict]] = {}
    for run in runs:
        key = json.dumps([run["config"].get(k) for k in differing])
        groups.setdefault(key, []).append(run)
    numbers = list(dict.fromkeys(n for run in runs for n in run["record"]["numbers"]))
    rows = [summarize_group(members, differing, numbers) for members in groups.values()]
    directions = {k: v for run in runs for k, v in run["record"]["higher_is_better"].items()}
    return {"fields": differing, "numbers": numbers, "higher_is_better": directions, "rows": rows,
            "mismatched": {f: [run["facts"][f] for run in runs] for f in mismatched}}


def summarize_group(members: list[dict], fields: list[str], numbers: list[str]) -> dict[str, Any]:
    """One row: the group's fields, and each number (and size, time) as mean, std and values over its seeds."""

    def stats(values: list[float | None]) -> dict[str, Any] | None:
        values = [v for v in values if v is not None]
        if not values:
            return None
        same = all(v == values[0] for v in values)  # keeps a parameter count an int
        return {"mean": values[0] if same else statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0, "values": values}

    seeds = [m["config"].get("train.seed", 0) for m in members]
    name = group_name([m["run"].name for m in members])
    curves = [m for m in members if any(e["name"] == "rollout_gap" for e in m["record"]["evaluators"])]
    measures = {n: stats([m["record"]["numbers"].get(n) for m in members]) for n in numbers}
    measures["parameters"] = stats([m["parameters"] for m in members])
    measures["train_seconds"] = stats([m["train_seconds"] for m in members])
    return {
        "name": name, "runs": [str(m["run"]) for m in members], "seeds": seeds,
        "fields": {f: members[0]["config"].get(f) for f in fields}, "measures": measures,
        "rollout_gap_curve": mean_curve([rollout_curve(m["record"]) for m in curves]) if curves else None,
    }


def group_name(names: list[str]) -> str:
    """A group's name: its one run's, else the comma-separated parts its runs' names share
    (``rollout=pra,seed=0`` and ``rollout=pra,seed=1``: ``rollout=pra (2 seeds)``), else the first's."""
    if len(names) == 1:
        return names[0]
    shared = [part for part in names[0].split(",") if all(part in name.split(",") for name in names[1:])]
    return f"{','.join(shared) or names[0]} ({len(names)} seeds)"


def rollout_curve(record: dict) -> list[float]:
    """The per-position gap (own-input error minus true-input error) of an evaluation."""
    curves = next(e["curves"] for e in record["evaluators"] if e["name"] == "rollout_gap")
    return [own - truth for own, truth in zip(curves["error_reading_own"], curves["error_reading_truth"])]


def mean_curve(curves: list[list[float]]) -> list[float]:
    return [statistics.fmean(values) for values in zip(*curves)]


def table(comparison: dict[str, Any], *, numeric: bool = False) -> tuple[list[str], list[list]]:
    """Header and rows; ``numeric``: means and stds in their own columns (CSV), else ``mean ± std`` text."""
    grouped = any(len(row["runs"]) > 1 for row in comparison["rows"])
    measures = [*comparison["numbers"], "parameters", "train_seconds"]
    header = ["run", *comparison["fields"]]
    for m in measures:
        header += [m, f"{m}_std"] if numeric and grouped else [m]
    rows = []
    for row in comparison["rows"]:
        values = [row["name"], *(row["fields"][f] for f in comparison["fields"])]
        for s in map(row["measures"].get, measures):
            if numeric:
                values += [s and s["mean"], s and s["std"]] if grouped else [s and s["mean"]]
            else:
                values.append(None if s is None else s["mean"] if len(set(s["values"])) == 1
                              else f"{cell(s['mean'])} ± {cell(s['std'])}")
        rows.append(values)
    return header, rows


def format_comparison(comparison: dict[str, Any]) -> str:
    """The terminal table, with a warning when the runs were evaluated differently."""
    lines = [text_table(*table(comparison))]
    for fact, values in comparison["mismatched"].items():
        lines.append(f"warning: the runs were evaluated with different {fact} ({', '.join(map(str, values))}); "
                     "their numbers are not comparable")
    return "\n".join(lines)


def write_comparison(comparison: dict[str, Any], out: str | os.PathLike) -> list[Path]:
    """``comparison.md``, ``.csv``, ``.json`` and, if any run measured it, ``rollout_gap.png``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "comparison.md", out / "comparison.csv"]
    atomic_write_text(paths[0], markdown_table(*table(comparison)))
    atomic_write_text(paths[1], csv_table(*table(comparison, numeric=True)))
    paths.append(write_json(comparison, out / "comparison.json"))
    curves = {row["name"]: (range(len(row["rollout_gap_curve"])), row["rollout_gap_curve"])
              for row in comparison["rows"] if row["rollout_gap_curve"]}
    if curves:
        paths.append(line_plot(curves, out / "rollout_gap.png", title="rollout gap (error reading own tokens - reading true ones)",
                               xlabel="token position", ylabel="gap"))
    return paths
