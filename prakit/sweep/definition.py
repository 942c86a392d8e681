"""What a sweep is made of: config files x ``--grid KEY=V1,V2`` axes x seeds, each member a run
named after what sets it apart (``rollout=pra,state_dim=16,seed=1``)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Sequence

import attrs

from prakit.config.io import parse_axis
from prakit.errors import PrakitError

#: The key ``--seeds`` sets.
SEED = "train.seed"


@attrs.frozen
class Member:
    """One run of a sweep: a config file and the overrides that make it this run."""

    name: str
    config: str
    overrides: tuple[str, ...]


@attrs.frozen
class Definition:
    """What the sweep command asked for; the same command gives the same definition."""

    configs: tuple[str, ...]
    overrides: tuple[str, ...] = ()
    grid: tuple[tuple[str, tuple[str, ...]], ...] = ()
    seeds: int | None = None

    def as_data(self) -> dict[str, Any]:
        """As ``sweep.json`` records it."""
        return {"configs": list(self.configs), "overrides": list(self.overrides),
                "grid": {key: list(values) for key, values in self.grid}, "seeds": self.seeds}

    def members(self) -> list[Member]:
        """Every run: configs x grid values x seeds, in that order."""
        stems = [Path(c).stem for c in self.configs]
        if len(set(stems)) < len(stems):
            raise PrakitError("two configs share a file name and so a run name; rename one or sweep them separately")
        keys = [o.partition("=")[0].strip() for o in self.overrides] + [key for key, _ in self.grid]
        if self.seeds is not None and SEED in keys:
            raise PrakitError(f"--seeds sets {SEED} (0..{self.seeds - 1}) and so does a {SEED}= override or --grid; "
                              f"give the seeds one way: --seeds N, or --grid {SEED}=S1,S2,...")
        labels = short_labels([key for key, _ in self.grid])
        seeds = [None] if self.seeds is None else range(self.seeds)
        out = []
        for config, stem in zip(self.configs, stems):
            for values in itertools.product(*[vals for _, vals in self.grid]):
                for seed in seeds:
                    parts = [stem] if len(self.configs) > 1 or not self.grid and seed is None else []
                    parts += [f"{label}={tidy(value)}" for label, value in zip(labels, values)]
                    overrides = [f"{key}={value}" for (key, _), value in zip(self.grid, values)]
                    if seed is not None:
                        parts.append(f"seed={seed}")
                        overrides.append(f"{SEED}={seed}")
                    out.append(Member(",".join(parts), config, (*self.overrides, *overrides)))
        return out


def parse_grid(text: str) -> tuple[str, tuple[str, ...]]:
    """``--grid model.decoder.state_dim=8,16,32`` -> ``("model.decoder.state_dim", ("8", "16", "32"))``."""
    return parse_axis(text, "--grid", "section.key=value1,value2,...")


def short_labels(keys: Sequence[str]) -> list[str]:
    """The shortest dotted suffixes that tell the keys apart; a component's ``name`` is called by
    its component (``model.rollout.name`` -> ``rollout``)."""
    paths = [key.removesuffix(".name").split(".") for key in keys]
    for length in range(1, max(map(len, paths), default=1) + 1):
        labels = [".".join(p[-length:]) for p in paths]
        if len(set(labels)) == len(labels):
            return labels
    raise PrakitError(f"--grid names a key twice: {', '.join(keys)}")


def tidy(value: str) -> str:
    """A grid value as it reads in a run's name: unquoted, no spaces, no path separators."""
    return value.strip().strip("\"'").replace(" ", "").replace("/", "_") or "''"


def describe(definition: dict[str, Any]) -> str:
    """A sweep definition in a few words: its configs, grid and seeds."""
    parts = [", ".join(Path(c).name for c in definition["configs"])]
    parts += [f"{key}={','.join(values)}" for key, values in definition["grid"].items()]
    if definition["seeds"] is not None:
        parts.append(f"{definition['seeds']} seeds")
    return "; ".join(parts)
