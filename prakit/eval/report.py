"""Tables of evaluation numbers for the terminal, markdown and CSV, and the JSON they come from."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

from prakit.io import atomic_write_text

Row = Sequence[Any]


def cell(value: Any) -> str:
    """A table cell: floats to 4 significant digits, ``None`` empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return "inf" if value == math.inf else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def text_table(header: Sequence[str], rows: Sequence[Row]) -> str:
    """Columns aligned with spaces; text left, numbers right."""
    cells = [list(header)] + [[cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    numeric = [all(isinstance(row[i], (int, float)) or row[i] is None for row in rows) and rows for i in range(len(header))]
    return "\n".join(
        "  ".join(c.rjust(w) if numeric[i] else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
        for r in cells
    )


def markdown_table(header: Sequence[str], rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_table(header: Sequence[str], rows: Sequence[Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return out.getvalue()


def write_json(data: Any, path: str | os.PathLike) -> Path:
    """Write JSON atomically; infinite numbers are written as ``Infinity`` (Python's json reads them)."""
    path = Path(path)
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    return path


def write_tables(header: Sequence[str], rows: Sequence[Row], stem: str | os.PathLike) -> list[Path]:
    """``stem.md`` and ``stem.csv`` of one table."""
    stem = Path(stem)
    paths = [stem.with_suffix(".md"), stem.with_suffix(".csv")]
    atomic_write_text(paths[0], markdown_table(header, rows))
    atomic_write_text(paths[1], csv_table(header, rows))
    return paths
