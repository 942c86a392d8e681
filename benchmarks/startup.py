"""How long the CLI takes before it does any work: interpreter + import + plugin discovery.

Each command runs as a fresh subprocess (median of N runs); `python -c pass` is the floor.
Usage: python benchmarks/startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import report

QUICKSTART = str(Path(__file__).resolve().parents[1] / "experiments" / "quickstart.toml")
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import prakit": [sys.executable, "-c", "import prakit"],
    "prakit --help": [sys.executable, "-m", "prakit", "--help"],
    "prakit plugins list": [sys.executable, "-m", "prakit", "plugins", "list"],
    "prakit config validate": [sys.executable, "-m", "prakit", "config", "validate", QUICKSTART],
}


def median_seconds(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    floor = median_seconds(COMMANDS["python -c pass"], args.runs)
    rows = []
    for name, command in COMMANDS.items():
        seconds = floor if name == "python -c pass" else median_seconds(command, args.runs)
        rows.append({"command": name, "median_s": seconds, "over_python_s": seconds - floor})
    report("startup", rows, runs=args.runs)


if __name__ == "__main__":
    main()
