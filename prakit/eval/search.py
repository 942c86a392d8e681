"""The guidance and EMA search: evaluate a run under every combination of sampling settings.

``prakit eval RUN_DIR --search sample.cfg_scale=1.5,2,3 --search sample.ema=slow,fast --num 10000``
draws ``num`` samples per setting (each into its own resumable store), evaluates each into
``RUN_DIR/search/<setting>/``, and tabulates them in ``RUN_DIR/search/search.{md,csv,json}``,
naming the best, and draws the number it ranks by against the first numeric setting
(``search.png``, ``.svg``). A setting whose evaluation is already there is not redone, so an
interrupted search continues where it stopped.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Sequence

from prakit import registry
from prakit.config import unstructure
from prakit.config.io import parse_axis, parse_override
from prakit.errors import PrakitError
from prakit.eval.evaluate import evaluate, evaluated, evaluator_configs, resolve
from prakit.eval.report import text_table, write_json, write_tables
from prakit.plots import line_plot
from prakit.run import SEARCH_TABLE, Run


def parse_grid(specs: Sequence[str]) -> dict[str, list]:
    """``["sample.cfg_scale=1.5,2", "sample.ema=slow,fast"]`` -> ``{"sample.cfg_scale": [1.5, 2], ...}``."""
    shape = "sample.FIELD=V1,V2,... (it searches sampling settings)"
    grid = {}
    for spec in specs:
        key, values = parse_axis(spec, "--search", shape)
        if not key.startswith("sample."):
            raise PrakitError(f"--search {spec!r} must look like {shape}")
        grid[key] = [parse_override(f"{key}={v}")[1] for v in values]
    return grid


def label(setting: dict[str, Any]) -> str:
    """``cfg_scale=2,ema=slow``: the folder name of one setting."""
    return ",".join(f"{k.removeprefix('sample.')}={v}" for k, v in setting.items())


def search(run_dir: str | Path, grid: dict[str, list], *, overrides: Sequence[str] = (), num: int | None = None,
           evaluators: Sequence[str] | None = None, reference: str | None = None, select: str | None = None,
           progress: bool = True) -> dict[str, Any]:
    """Evaluate every setting of ``grid``; return (and write) the table and the best setting by ``select``."""
    run_dir = Path(run_dir)
    run = Run(run_dir)
    folder = run.search_dir
    built = [registry.build(c) for c in evaluator_configs(resolve(run_dir, overrides).config, evaluators)]
    if select is not None:  # checked before anything is drawn
        ranked = {k for evaluator in built for k in evaluator.higher_is_better}
        if select.split("@")[0] not in ranked:
            raise PrakitError(f"--select {select!r} is not a number the evaluators rank; they rank: "
                              f"{', '.join(sorted(ranked)) or 'none'}")
    rows = []
    for values in itertools.product(*grid.values()):
        setting = dict(zip(grid, values))
        changes = [f"{k}={json.dumps(v)}" for k, v in setting.items()]
        target = resolve(run_dir, [*overrides, *changes], num=num, out=folder / label(setting))
        record = done_before(target, evaluators, reference)
        if record is None:
            record = evaluate(target, evaluators=evaluators, reference=reference, progress=progress)
        rows.append({"setting": setting, "numbers": record["numbers"], "higher_is_better": record["higher_is_better"]})
    best_by = select or default_selection(rows, [e.primary for e in built if e.primary])
    best = pick_best(rows, best_by)
    edges = on_the_edge(grid, best["setting"])
    result = {"grid": grid, "num": target.num, "select": best_by, "best": best["setting"], "edges": edges, "rows": rows}
    header, table = search_table(rows, grid)
    write_json(result, run.search_record)
    write_tables(header, table, folder / SEARCH_TABLE)
    if curves := search_curves(rows, grid, best_by):
        axis, lines = curves
        line_plot(lines, folder / f"{SEARCH_TABLE}.png", title=f"{best_by} by {axis}", xlabel=axis, ylabel=best_by)
    result["text"] = text_table(header, table) + f"\nbest by {best_by}: {label(best['setting'])}" + "".join(
        f"\n{edge}" for edge in edges)
    return result


def on_the_edge(grid: dict[str, list], best: dict[str, Any]) -> list[str]:
    """A warning for each numeric setting whose best value is the largest or smallest searched."""
    edges = []
    for key, values in grid.items():
        if len(values) < 2 or not numeric(values):
            continue
        side = {max(values): "largest", min(values): "smallest"}.get(best[key])
        if side:
            name = key.removeprefix("sample.")
            edges.append(f"{name}={best[key]} is the {side} {name} searched: the best may lie beyond it, search further")
    return edges


def numeric(values: Sequence) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def search_curves(rows: list[dict], grid: dict[str, list], number: str) -> tuple[str, dict[str, tuple]] | None:
    """``number`` against the first numeric setting of ``grid`` that has several values (by its
    name without ``sample.``): one line per combination of the other settings (``ema=slow``;
    ``number`` when there are none), in the order of the setting's values; ``None`` without one."""
    axis = next((key for key, values in grid.items() if len(values) > 1 and numeric(values)), None)
    if axis is None:
        return None
    points: dict[str, list] = {}
    for row in rows:
        others = label({k: v for k, v in row["setting"].items() if k != axis}) or number
        points.setdefault(others, []).append((row["setting"][axis], row["numbers"][number]))
    return axis.removeprefix("sample."), {name: tuple(zip(*sorted(line))) for name, line in points.items()}


def done_before(target, evaluators, reference) -> dict | None:
    """The evaluation already in ``target.out``, if it was made the same way."""
    record = evaluated(target)
    if record is None:
        return None
    wanted = [unstructure(c) for c in evaluator_configs(target.config, evaluators)]
    same = ([e["config"] for e in record["evaluators"]] == wanted
            and record["reference"]["path"] == str(Path(reference or target.config.eval.reference or target.config.data.store))
            and record["checkpoint"] == str(target.checkpoint))
    return record if same else None


def default_selection(rows: list[dict], primaries: list[str]) -> str:
    """The first of the evaluators' ``primary`` numbers that was computed (fid among the
    built-ins), else the first number that has a better direction."""
    directions = rows[0]["higher_is_better"]
    offered = [number for number in primaries if number in directions]
    if offered:
        return offered[0]
    if not directions:
        raise PrakitError("none of the evaluators' numbers says which way is better: name one with --select")
    return next(iter(directions))


def pick_best(rows: list[dict], number: str) -> dict:
    if number not in rows[0]["higher_is_better"]:  # a feature network's suffix that was not computed
        known = ", ".join(rows[0]["higher_is_better"]) or "none"
        raise PrakitError(f"--select {number!r} is not among the numbers computed: {known}")
    sign = 1 if rows[0]["higher_is_better"][number] else -1
    return max(rows, key=lambda row: sign * row["numbers"][number])


def search_table(rows: list[dict], grid: dict[str, list]) -> tuple[list[str], list[list]]:
    numbers = list(rows[0]["numbers"])
    header = [k.removeprefix("sample.") for k in grid] + numbers
    return header, [[row["setting"][k] for k in grid] + [row["numbers"][n] for n in numbers] for row in rows]
