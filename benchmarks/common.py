"""Shared output for benchmarks: a printed table and a JSON file under benchmarks/results/
(or the folder in $PRAKIT_BENCHMARK_RESULTS)."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(os.environ.get("PRAKIT_BENCHMARK_RESULTS") or Path(__file__).resolve().parent / "results")


def machine() -> dict[str, str]:
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    return {"python": sys.version.split()[0], "torch": torch.__version__, "device": device}


def report(name: str, rows: list[dict], **meta) -> Path:
    """Print ``rows`` as a table and write them with ``meta`` to ``results/<name>.json``."""
    columns = list(rows[0])
    cells = [[_fmt(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": machine(), **meta, "rows": rows}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
