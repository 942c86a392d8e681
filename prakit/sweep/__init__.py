"""``prakit sweep``: an ablation as one command.

A sweep is the product of config files, ``--grid KEY=V1,V2`` axes and seeds (:mod:`.definition`);
its folder holds ``sweep.json`` and one run directory per member (:mod:`.manifest`); each stage
of each run is a cluster job, submitted again only when it is neither done nor queued or
running (:mod:`.jobs`).
"""

from prakit.sweep.definition import Definition, Member, parse_grid
from prakit.sweep.jobs import cancel_sweep, stage_states, submit_sweep, wait
from prakit.sweep.manifest import MANIFEST, Sweep

__all__ = ["MANIFEST", "Definition", "Member", "Sweep", "cancel_sweep", "parse_grid", "stage_states", "submit_sweep",
           "wait"]
