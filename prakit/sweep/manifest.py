"""A sweep's folder: ``sweep.json`` (the definition and every job submitted for every stage) and
one run directory per member."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

from prakit.errors import PrakitError
from prakit.io import DamagedFileError, atomic_write_text, check_shape, read_json
from prakit.run import STAGES
from prakit.sweep.definition import Definition, describe

MANIFEST = "sweep.json"
#: What a damaged manifest's message says to do.
REDO = ("restore it, or delete it and rerun the sweep's command, which keeps what its runs' files show done "
        "(cancel the sweep's queued or running jobs first: a new sweep.json does not know them)")
#: ``sweep.json`` as the sweep's code reads it (:data:`prakit.io.Shape`), and each run entry in it.
SHAPE = {
    "definition": {"configs": [str], "overrides": [str], "grid": dict, "seeds": (int, type(None))},
    "settings": {"stages": [str], "num": (int, type(None))},
    "runs": dict,
    "jobs": [{"run": str, "stage": str, "job_id": str, "folder": str, "cluster": str, "submission": int}],
}
RUN = {"config": str, "overrides": [str]}


class Sweep:
    """A sweep's folder: its manifest (:data:`MANIFEST`) and one run directory per member."""

    def __init__(self, folder: str | os.PathLike, data: dict[str, Any]):
        self.folder, self.data = Path(folder), data

    @classmethod
    def open(cls, folder: str | os.PathLike) -> Sweep:
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise PrakitError(f"{folder} is not a sweep (no {MANIFEST}); start one with `prakit sweep CONFIG ...`")
        return cls(folder, read_manifest(path))

    @classmethod
    def create(cls, folder: str | os.PathLike, definition: Definition, settings: dict[str, Any]) -> Sweep:
        """The sweep in ``folder``: a new one, or the one already there if it has this definition."""
        members = definition.members()
        wanted = definition.as_data()
        if (Path(folder) / MANIFEST).is_file():
            sweep = cls.open(folder)
            if same_runs(sweep.data["definition"]) != same_runs(wanted):
                raise PrakitError(f"{folder} holds another sweep ({describe(sweep.data['definition'])}); "
                                  "rerun that sweep's command, or choose another --out")
            sweep.data["settings"] = settings
            return sweep
        now = datetime.datetime.now().isoformat(timespec="seconds")
        runs = {m.name: {"config": m.config, "overrides": list(m.overrides)} for m in members}
        return cls(folder, {"created": now, "definition": wanted, "settings": settings, "runs": runs, "jobs": []})

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.folder / MANIFEST, json.dumps(self.data, indent=1) + "\n")

    @property
    def names(self) -> list[str]:
        return list(self.data["runs"])

    def run_dir(self, name: str) -> Path:
        return self.folder / name

    def record(self, name: str, stage: str, job_id: str, folder: str, cluster: str, **extra: Any) -> None:
        """Note a submitted job of ``name``'s ``stage`` (saved with :meth:`save`)."""
        self.data["jobs"].append({"run": name, "stage": stage, "job_id": job_id, "folder": folder,
                                  "cluster": cluster, **extra})

    def jobs(self, name: str, stage: str) -> list[dict[str, Any]]:
        """The jobs last submitted for ``name``'s ``stage`` (a sampling stage may have several shards)."""
        records = [j for j in self.data["jobs"] if j["run"] == name and j["stage"] == stage]
        if not records:
            return []
        last = records[-1]["submission"]
        return [j for j in records if j["submission"] == last]


def same_runs(definition: dict[str, Any]) -> dict[str, Any]:
    """A definition as the runs it makes: its config files in any order make the same runs."""
    return {**definition, "configs": sorted(definition["configs"])}


def read_manifest(path: Path) -> dict[str, Any]:
    """``sweep.json`` with every part the sweep's code reads present and of its type, else a
    :class:`~prakit.io.DamagedFileError`."""
    data = read_json(path, REDO, SHAPE)
    if not data["runs"]:
        raise DamagedFileError(path, "runs is empty", REDO)
    unknown = [stage for stage in data["settings"]["stages"] if stage not in STAGES]
    if unknown:
        raise DamagedFileError(path, f"settings.stages names {unknown[0]!r}, not a stage", REDO)
    for name, run in data["runs"].items():
        check_shape(path, run, RUN, REDO, f"runs[{name!r}]")
    return data
