"""Data throughput: the training loader against an in-memory numpy baseline read the same way
(same batches, flips and DataLoader workers, images indexed from a numpy array instead of
read from the store), and preparation in images/s.

Stores are made in a temporary folder: ImageNet-like JPEGs (500x375, cut from scikit-image's
photographs) prepared at 256x256 with ``--shuffle-seed``, digits at 16x16 and photo_crops at
64x64. Needs the data extra. Usage: python benchmarks/data_loading.py [--images 1024] [--batches 8]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from common import report
from PIL import Image
from prakit_datasets.digits import DigitsConfig
from prakit_datasets.imagefolder import ImageFolderConfig
from prakit_datasets.photo_crops import PhotoCropsConfig

from prakit.data import StepBatches, TrainLoader, iterate, open_store, prepare

WORKERS = (0, 1, 2)
BATCH = 256


class InMemoryBatches(StepBatches):
    """The loader's batches, indexed from numpy arrays in memory: the baseline."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, like: StepBatches):
        super().__init__(None, like.order, like.hflip, like.image_shape)
        self.images, self.labels = images, labels

    def read(self, indices, out):
        np.take(self.images, indices, axis=0, out=out)
        return self.labels[indices]


def jpeg_tree(root: Path, count: int) -> Path:
    """``count`` ImageNet-like JPEGs (500x375 or 375x500), one class folder per photograph."""
    from skimage import data

    photos = {name: getattr(data, name)() for name in PhotoCropsConfig().photos}
    rng = np.random.default_rng(0)
    for i in range(count):
        name = list(photos)[i % len(photos)]
        photo = photos[name]
        w, h = (500, 375) if i % 3 else (375, 500)
        side = rng.uniform(0.5, 1.0) * min(photo.shape[0] / h, photo.shape[1] / w)
        ch, cw = int(h * side), int(w * side)
        top, left = rng.integers(0, photo.shape[0] - ch + 1), rng.integers(0, photo.shape[1] - cw + 1)
        crop = Image.fromarray(photo[top:top + ch, left:left + cw]).resize((w, h), Image.BICUBIC)
        (root / name).mkdir(parents=True, exist_ok=True)
        crop.save(root / name / f"{i:06d}.JPEG", quality=90)
    return root


def images_per_second(batches: StepBatches, workers: int, count: int, windows: int = 3) -> float:
    """Steady-state throughput: the median of ``windows`` runs of ``count`` batches, after the
    first batches (worker start-up, queue fill); the median keeps a neighbour's burst out."""
    it = iterate(batches, 0, workers)
    for _ in range(2 * workers + 1):
        next(it)
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        n = sum(len(next(it)[1]) for _ in range(count))
        rates.append(n / (time.perf_counter() - start))
    del it  # stops the workers
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024, help="JPEGs for the 256x256 store")
    parser.add_argument("--batches", type=int, default=8, help="batches per timed window (3 windows, median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sources = {
            "imagefolder": (ImageFolderConfig(root=str(jpeg_tree(tmp / "jpegs", args.images))), 256),
            "digits": (DigitsConfig(), 16),
            "photo_crops": (PhotoCropsConfig(), 64),
        }
        prep_rows, load_rows = [], []
        for name, (cfg, size) in sources.items():
            path = tmp / f"{name}-{size}.zarr"
            result = prepare(cfg, path, size=size, workers=2, shuffle_seed=0, progress=False)
            prep_rows.append({"source": name, "size": size, "workers": 2, "images": result.count,
                              "images_per_s": result.items_per_second})
            store = open_store(path)
            images, labels = store.images[:], store.all_labels()
            for workers in WORKERS:
                batches = TrainLoader(path, batch_size=BATCH, seed=0, hflip=True).step_batches()
                zarr_rate = images_per_second(batches, workers, args.batches)
                numpy_rate = images_per_second(InMemoryBatches(images, labels, batches), workers, args.batches)
                load_rows.append({"store": name, "size": size, "batch": BATCH, "workers": workers,
                                  "loader_img_s": zarr_rate, "numpy_img_s": numpy_rate,
                                  "loader_vs_numpy": zarr_rate / numpy_rate})
        report("data_preparation", prep_rows)
        report("data_loading", load_rows, batches_per_window=args.batches, windows=3,
               goal="256x256, 2 workers: >= 2000 img/s and >= 25% of numpy")


if __name__ == "__main__":
    main()
