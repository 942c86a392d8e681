"""A sweep's folder: ``sweep.json`` (the definition and every job submitted for every stage) and
one run directory per member."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

from prakit.errors import PrakitError
from prakit.io import atomic_write_text
from prakit.sweep.definition import Definition, describe

MANIFEST = "sweep.json"


class Sweep:
    """A sweep's folder: its manifest (:data:`MANIFEST`) and one run directory per member."""

    def __init__(self, folder: str | os.PathLike, data: dict[str, Any]):
        self.folder, self.data = Path(folder), data

    @classmethod
    def open(cls, folder: str | os.PathLike) -> Sweep:
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise PrakitError(f"{folder} is not a sweep (no {MANIFEST}); start one with `prakit sweep CONFIG ...`")
        return cls(folder, json.loads(path.read_text()))

    @classmethod
    def create(cls, folder: str | os.PathLike, definition: Definition, settings: dict[str, Any]) -> Sweep:
        """The sweep in ``folder``: a new one, or the one already there if it has this definition."""
        members = definition.members()
        wanted = definition.as_data()
        if (Path(folder) / MANIFEST).is_file():
            sweep = cls.open(folder)
            if sweep.data["definition"] != wanted:
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
        last = records[-1].get("submission")
        return [j for j in records if j.get("submission") == last]
