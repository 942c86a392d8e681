"""Datasets as zarr v3 stores: preparing them, loading training batches, storing samples.

    from prakit.data import open_store, prepare, TrainLoader, SampleStore
    report = prepare(digits_cfg, "data/digits-16.zarr", size=16)
    loader = TrainLoader("data/digits-16.zarr", batch_size=64, seed=0, num_workers=2)
    for images, labels in loader.batches(start_step=0): ...

The store format, the preparation and the loader are described in docs/data.md.
"""

from prakit.data.export import export_grid, export_npz, save_grid
from prakit.data.loader import Order, StepBatches, TrainLoader, iterate, to_model_input
from prakit.data.prepare import Report, Skip, default_workers, prepare
from prakit.data.samples import SampleStore
from prakit.data.store import CHUNK, FORMAT_VERSION, Store, StoreError, disk_size, open_store

__all__ = [
    "CHUNK",
    "FORMAT_VERSION",
    "Order",
    "Report",
    "SampleStore",
    "Skip",
    "StepBatches",
    "Store",
    "StoreError",
    "TrainLoader",
    "default_workers",
    "disk_size",
    "export_grid",
    "export_npz",
    "iterate",
    "open_store",
    "prepare",
    "save_grid",
    "to_model_input",
]
