"""``prakit compare``: the ablation table across evaluated runs.

Columns are the config fields that differ between the runs, then every number their
``eval.json`` holds, the parameter count and the training wall-clock. Runs that differ only
in ``train.seed`` pool into one row: each number by seed, its mean and 95% confidence interval.
``versus`` adds every other row's difference to one row, paired by seed, with a paired t-test.
Each curve an evaluator declares (``Evaluator.compared_curves``, the rollout gap by position,
say) is averaged over a row's seeds and drawn for every row in one plot.
"""

from __future__ import annotations

import collections
import json
import os
import statistics
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from prakit import registry
from prakit.components import Curve
from prakit.config import unstructure
from prakit.config.io import flatten
from prakit.errors import PrakitError
from prakit.eval.report import cell, csv_table, markdown_table, text_table, write_json
from prakit.eval.stats import INTERVAL, PAIRED_TEST, describe, paired
from prakit.io import atomic_write_text
from prakit.plots import line_plot
from prakit.run import Run, load_record

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


def train_seconds(run: Run, batch_size: int) -> float | None:
    """Training wall-clock from the run's metrics: images per log window over the window's images/s."""
    rows = [row for row in run.metrics() if row.get("images_per_s", 0) > 0]
    seconds, last = 0.0, -1
    for row in rows:
        seconds += (row["step"] - last) * batch_size / row["images_per_s"]
        last = row["step"]
    return seconds if rows else None


def load_run(run_dir: Path, record: Path | None = None) -> dict[str, Any]:
    """A run's flattened config (every field, a default too, so a run whose file omits a field at its
    default pools with one that writes it), evaluation (``record``, default its ``eval.json``), parameter
    count and training time."""
    from prakit.model import parameter_counts
    from prakit.summary import meta_model

    run = Run(run_dir).require()
    record = run.eval_record if record is None else record
    if not record.is_file():
        raise PrakitError(f"{run_dir} has no {record.relative_to(run_dir)}: evaluate it first with `prakit eval {run_dir}`")
    cfg = run.config()
    record = load_record(record)
    facts = {"reference": record["reference"]["path"], "features": ",".join(record.get("features", {})),
             "samples": record.get("samples", {}).get("count")}
    return {"run": run_dir, "config": flatten(unstructure(cfg)), "record": record, "facts": facts,
            "declared": curve_declarations(record),
            "parameters": parameter_counts(meta_model(cfg))["total"],
            "train_seconds": train_seconds(run, cfg.train.batch_size)}


def compare(run_dirs: Sequence[str | os.PathLike], versus: str | None = None,
            records: Mapping[str, Path] | None = None) -> dict[str, Any]:
    """The comparison of the runs: differing fields, rows pooling the seeds of a variant and their
    numbers; with ``versus`` (a row's name), every other row's differences to that row. ``records``
    names the evaluation to read for a run (by its directory; default its ``eval.json``): one
    of its guidance search's, say."""
    if len(set(map(str, run_dirs))) < len(run_dirs):
        raise PrakitError("a run directory is named twice")
    runs = [load_run(Path(r), (records or {}).get(str(r))) for r in run_dirs]
    differing = differing_fields([run["config"] for run in runs])
    mismatched = [f for f in EVALUATION_FACTS if len({json.dumps(run["facts"][f]) for run in runs}) > 1]
    groups: dict[str, list[dict]] = {}
    for run in runs:
        key = json.dumps([run["config"].get(k) for k in differing])
        groups.setdefault(key, []).append(run)
    numbers = list(dict.fromkeys(n for run in runs for n in run["record"]["numbers"]))
    rows = distinct_names([summarize_group(members, differing, numbers) for members in groups.values()])
    directions = {k: v for run in runs for k, v in run["record"]["higher_is_better"].items()}
    curves = {name: {"title": curve.title, "xlabel": curve.xlabel, "ylabel": curve.ylabel}
              for run in runs for name, (curve, _) in run["declared"].items()}
    comparison = {"fields": differing, "numbers": numbers, "higher_is_better": directions, "rows": rows,
                  "interval": INTERVAL, "curves": curves,
                  "mismatched": {f: [run["facts"][f] for run in runs] for f in mismatched}}
    if versus is not None:
        comparison["versus"] = paired_rows(rows, find_row(rows, versus), measures(comparison))
    return comparison


def seed_of(member: dict) -> int:
    """A run's ``train.seed``."""
    return member["config"].get("train.seed", 0)


def refuse_duplicate_seeds(members: list[dict]) -> None:
    """Two runs of one variant with the same seed measure the same thing twice: refuse to pick one."""
    first: dict[int, dict] = {}
    for member in members:
        earlier = first.setdefault(seed_of(member), member)
        if earlier is not member:
            raise PrakitError(f"{earlier['run']} and {member['run']} are the same variant with the same train.seed "
                              f"{seed_of(member)}: a rerun must use a new train.seed to pool with the earlier runs")


def summarize_group(members: list[dict], fields: list[str], numbers: list[str]) -> dict[str, Any]:
    """One row: the group's fields, and each number (and size, time) by seed with its mean, std and
    interval (:func:`prakit.eval.stats.describe`)."""
    refuse_duplicate_seeds(members)

    def by_seed(value_of: Callable[[dict], float | None]) -> dict[str, Any] | None:
        return describe({str(seed_of(m)): value for m in members if (value := value_of(m)) is not None})

    names = [m["run"].name for m in members]
    measured = {n: by_seed(lambda m, n=n: m["record"]["numbers"].get(n)) for n in numbers}
    measured["parameters"] = by_seed(lambda m: m["parameters"])
    measured["train_seconds"] = by_seed(lambda m: m["train_seconds"])
    return {
        "name": group_name(names), "variant": variant_name(names), "n": len(members),
        "runs": [str(m["run"]) for m in members], "seeds": [seed_of(m) for m in members],
        "fields": {f: members[0]["config"].get(f) for f in fields}, "measures": measured,
        "curves": mean_curves([declared_curves(m["declared"]) for m in members]),
    }


def variant_name(names: list[str]) -> str:
    """The comma-separated parts all ``names`` share (``rollout=pra`` of ``rollout=pra,seed=0`` and
    ``rollout=pra,seed=1``), else the first name."""
    shared = [part for part in names[0].split(",") if all(part in name.split(",") for name in names[1:])]
    return ",".join(shared) or names[0]


def group_name(names: list[str]) -> str:
    """A group's name: its one run's, else its variant's with the number of seeds (``rollout=pra (2 seeds)``)."""
    return names[0] if len(names) == 1 else f"{variant_name(names)} ({len(names)} seeds)"


def distinct_names(rows: list[dict]) -> list[dict]:
    """``rows``, each name that several rows share prefixed with its row's folder (``flow-head/pra (3 seeds)``)."""
    counts = collections.Counter(row["name"] for row in rows)
    for row in rows:
        if counts[row["name"]] > 1:
            row["name"] = f"{Path(row['runs'][0]).parent.name}/{row['name']}"
    return rows


def find_row(rows: list[dict], name: str) -> dict:
    """The one row ``name`` names: by its name, its variant's, or a run directory (path or name) in it."""
    found = [row for row in rows
             if name in {row["name"], row["variant"], *row["runs"], *(Path(run).name for run in row["runs"])}]
    if len(found) != 1:
        problem = "names no row" if not found else "names several rows"
        raise PrakitError(f"--versus {name!r} {problem}; the rows are: {', '.join(row['name'] for row in rows)}")
    return found[0]


def paired_rows(rows: list[dict], reference: dict, names: list[str]) -> dict[str, Any]:
    """Every other row minus ``reference``, each measure paired by seed (:func:`prakit.eval.stats.paired`)."""

    def difference(row: dict, measure: str) -> dict[str, Any] | None:
        mine, theirs = row["measures"].get(measure), reference["measures"].get(measure)
        return paired(mine["values"], theirs["values"]) if mine and theirs else None

    return {"name": reference["name"], "test": PAIRED_TEST, "difference": f"row minus {reference['name']}",
            "rows": [{"name": row["name"], "pairs": len(set(row["seeds"]) & set(reference["seeds"])),
                      "measures": {m: difference(row, m) for m in names}}
                     for row in rows if row is not reference]}


def curve_declarations(record: dict) -> dict[str, tuple[Curve, dict[str, list[float]]]]:
    """The curves the evaluators of an evaluation declare for comparison, each with the curves its
    evaluator returned (an evaluator no longer installed declares none)."""
    evaluators, found = registry.get("evaluator"), {}
    for entry in record["evaluators"]:
        if entry["name"] in evaluators:
            declared = getattr(evaluators.entry(entry["name"]).builder, "compared_curves", {})
            found |= {name: (curve, entry["curves"]) for name, curve in declared.items()}
    return found


def declared_curves(declared: dict[str, tuple[Curve, dict[str, list[float]]]]) -> dict[str, list[float]]:
    """Each declared curve (:func:`curve_declarations`), made from what its evaluator returned."""
    return {name: list(curve.of(returned)) for name, (curve, returned) in declared.items()}


def mean_curves(runs: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    """Each curve averaged over the runs that have it."""
    names = dict.fromkeys(name for curves in runs for name in curves)
    return {name: [statistics.fmean(values) for values in zip(*(c[name] for c in runs if name in c))] for name in names}


def measures(comparison: dict[str, Any]) -> list[str]:
    """The measures of every row, in column order."""
    return [*comparison["numbers"], "parameters", "train_seconds"]


def estimate(s: dict[str, Any] | None, n: int) -> Any:
    """A table cell: the mean and ``[ci_low, ci_high]`` where it varies over several values,
    with ``(n=...)`` where it has fewer values than its row has seeds."""
    if s is None or s["mean"] is None:
        return None
    varies = s["ci_low"] is not None and s["std"] > 0
    text = f"{cell(s['mean'])} [{cell(s['ci_low'])}, {cell(s['ci_high'])}]" if varies else s["mean"]
    return text if s["n"] == n else f"{cell(text)} (n={s['n']})"


def table(comparison: dict[str, Any], *, numeric: bool = False) -> tuple[list[str], list[list]]:
    """Header and rows; ``numeric``: means, stds and intervals in their own columns (CSV), else
    ``mean [ci_low, ci_high]`` text."""
    grouped = any(row["n"] > 1 for row in comparison["rows"])
    spread = ("std", "ci_low", "ci_high") if numeric and grouped else ()
    header = ["run", *comparison["fields"], "n"]
    for m in measures(comparison):
        header += [m, *(f"{m}_{k}" for k in spread)]
    rows = []
    for row in comparison["rows"]:
        values = [row["name"], *(row["fields"][f] for f in comparison["fields"]), row["n"]]
        for s in map(row["measures"].get, measures(comparison)):
            if numeric:
                values += [s and s["mean"], *(s and s[k] for k in spread)]
            else:
                values.append(estimate(s, row["n"]))
        rows.append(values)
    return header, rows


def versus_table(comparison: dict[str, Any], *, numeric: bool = False) -> tuple[list[str], list[list]]:
    """Header and rows of the differences to the ``versus`` row; ``numeric``: difference, interval
    and p-value in their own columns (CSV), else ``difference [ci_low, ci_high]`` and the p-value or
    why there is none."""
    versus = comparison["versus"]
    header = ["run", "pairs"]
    for m in measures(comparison):
        header += [f"{m}_diff", f"{m}_ci_low", f"{m}_ci_high", f"{m}_p"] if numeric else [f"{m} diff", f"{m} p"]
    rows = []
    for row in versus["rows"]:
        values = [row["name"], row["pairs"]]
        for d in map(row["measures"].get, measures(comparison)):
            if numeric:
                values += [d and d[k] for k in ("mean", "ci_low", "ci_high", "p_value")]
            else:
                values += [estimate(d, row["pairs"]), d and (d["note"] if d["p_value"] is None else d["p_value"])]
        rows.append(values)
    return header, rows


def format_comparison(comparison: dict[str, Any], render: Callable = text_table) -> str:
    """The table (``render``: :func:`text_table` for the terminal, :func:`markdown_table`), what its
    intervals are, the differences to the ``versus`` row, and a warning when the runs were
    evaluated differently."""
    lines = [render(*table(comparison))]
    if any(row["n"] > 1 for row in comparison["rows"]):
        lines.append(f"mean [{comparison['interval']}] over a row's n seeds")
    if "versus" in comparison:
        versus = comparison["versus"]
        lines += ["", f"versus {versus['name']}: {versus['difference']}, paired by seed, as mean "
                  f"[{comparison['interval']}]; p: {versus['test']}", "", render(*versus_table(comparison))]
    for fact, values in comparison["mismatched"].items():
        lines.append(f"warning: the runs were evaluated with different {fact} ({', '.join(map(str, values))}); "
                     "their numbers are not comparable")
    return "\n".join(lines)


def write_comparison(comparison: dict[str, Any], out: str | os.PathLike) -> list[Path]:
    """``comparison.md``, ``.csv``, ``.json``, with ``versus`` ``comparison_versus.csv``, and a plot
    of each declared curve that a run measured (``rollout_gap.png`` and ``.svg``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "comparison.md", out / "comparison.csv"]
    atomic_write_text(paths[0], format_comparison(comparison, markdown_table) + "\n")
    atomic_write_text(paths[1], csv_table(*table(comparison, numeric=True)))
    if "versus" in comparison:
        paths.append(out / "comparison_versus.csv")
        atomic_write_text(paths[-1], csv_table(*versus_table(comparison, numeric=True)))
    paths.append(write_json(comparison, out / "comparison.json"))
    for name in comparison["curves"]:
        paths += plot_curve(comparison, name, out / f"{name}.png")
    return paths


def plot_curve(comparison: dict[str, Any], name: str, path: str | os.PathLike) -> list[Path]:
    """The declared curve ``name`` of every row that measured it, one line a row, into ``path``
    (``NAME.png``) and ``NAME.svg``."""
    curve = comparison["curves"][name]
    lines = {row["name"]: (range(len(row["curves"][name])), row["curves"][name])
             for row in comparison["rows"] if name in row["curves"]}
    return line_plot(lines, path, title=curve["title"], xlabel=curve["xlabel"], ylabel=curve["ylabel"])
