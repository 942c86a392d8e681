"""The sample store: a killed writer resumes without gaps or duplicates, ranks split the shards,
other runs' stores are refused; export to the ADM npz and to PNG grids."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from helpers import prakit
from PIL import Image

from prakit.data import SampleStore, StoreError, export_grid, export_npz, open_store, save_grid
from prakit.errors import PrakitError

SHAPE = (4, 4, 3)
ATTRS = {"config": {"model": "tiny", "seed": 0}, "checkpoint": "runs/x/step-100.pt"}


def sample(index):
    """What the 'model' generates for an index: a deterministic image and label."""
    return np.full(SHAPE, (index * 7) % 256, np.uint8), index % 5


def fill(store, batch=5, **kw):
    for indices in store.missing(batch, **kw):
        images, labels = zip(*map(sample, indices))
        store.write(indices, np.stack(images), labels)


def open_samples(path, **kw):
    return SampleStore.open(path, num=60, image_shape=SHAPE, attrs=ATTRS, shard=16, **kw)


def check_contents(path):
    store = open_store(path)
    expected = [sample(i) for i in range(60)]
    np.testing.assert_array_equal(store.images[:], np.stack([image for image, _ in expected]))
    assert store.labels[:].tolist() == [label for _, label in expected]
    store.verify()
    return store


WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from test_data_samples import open_samples, sample
    store = open_samples(sys.argv[1])
    for indices in store.missing(5):
        images, labels = zip(*map(sample, indices))
        store.write(indices, np.stack(images), labels)
        time.sleep(0.05)
""")


def test_a_killed_writer_resumes_without_gaps_or_duplicates(tmp_path):
    path = tmp_path / "samples.zarr"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")])}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], env=env)
    deadline = time.monotonic() + 60
    while writer.poll() is None and time.monotonic() < deadline:
        if len(list((path / "progress").glob("shard-*.json"))) >= 2:  # into the second shard
            os.kill(writer.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    assert writer.wait() == -signal.SIGKILL, "the writer ended before it could be killed"

    store = open_samples(path)
    assert not store.complete and 16 < store.written < 60
    missing = [i for batch in store.missing(5) for i in batch]
    assert len(missing) == len(set(missing)) == 60 - store.written
    fill(store)
    assert store.complete
    resumed = check_contents(path)
    fill(open_samples(tmp_path / "whole.zarr"))
    assert resumed.attrs["fingerprint"] == open_store(tmp_path / "whole.zarr").attrs["fingerprint"]
    assert resumed.attrs["config"] == ATTRS["config"] and resumed.attrs["checkpoint"] == ATTRS["checkpoint"]
    assert resumed.attrs["class_names"] == ["0", "1", "2", "3", "4"]


def test_writing_a_sample_twice_is_refused(tmp_path):
    store = open_samples(tmp_path / "s.zarr")
    first = store.missing(5)[0]
    images, labels = zip(*map(sample, first))
    store.write(first, np.stack(images), labels)
    with pytest.raises(StoreError, match=r"samples \[0, 1, 2, 3, 4\] are already written"):
        store.write(first, np.stack(images), labels)
    with pytest.raises(StoreError, match="expected uint8 images of shape"):
        store.write([5], np.zeros((1, *SHAPE), np.float32), [0])


def test_ranks_share_the_shards_and_the_last_one_finishes(tmp_path):
    ranks = [open_samples(tmp_path / "s.zarr") for _ in range(3)]
    batches = [ranks[r].missing(5, rank=r, world_size=3) for r in range(3)]
    flat = [i for per_rank in batches for batch in per_rank for i in batch]
    assert sorted(flat) == list(range(60))  # together they cover every index once
    assert all(len({i // 16 for i in batch}) == 1 for per_rank in batches for batch in per_rank)  # within one shard
    for r in (2, 0, 1):
        fill(ranks[r], rank=r, world_size=3)
        assert ranks[r].complete == (r == 1)
    check_contents(tmp_path / "s.zarr")


def test_a_store_of_another_run_is_refused_unless_told(tmp_path):
    path = tmp_path / "s.zarr"
    store = open_samples(path)
    fill(store)
    other = {**ATTRS, "config": {"model": "other"}}
    with pytest.raises(StoreError, match=r"another config \(config.model: \"tiny\" in the store, \"other\" now; "
                                         r"config.seed: 0 in the store, null now\); pass on_mismatch='restart' "
                                         r".* or on_mismatch='resume'"):
        SampleStore.open(path, num=60, image_shape=SHAPE, attrs=other)
    with pytest.raises(StoreError, match="another num"):
        SampleStore.open(path, num=61, image_shape=SHAPE, attrs=ATTRS)
    for key in ("checkpoint", "sampling"):
        with pytest.raises(StoreError, match=rf"another {key} \({key}: .* in the store, \"elsewhere\" now\); "):
            SampleStore.open(path, num=60, image_shape=SHAPE, attrs={**ATTRS, key: "elsewhere"})
    kept = SampleStore.open(path, num=60, image_shape=SHAPE, attrs=other, on_mismatch="resume")
    assert kept.complete and open_store(path).attrs["config"] == {"model": "other"}
    fresh = SampleStore.open(path, num=60, image_shape=SHAPE, attrs=ATTRS, on_mismatch="restart")
    assert fresh.written == 0 and not fresh.complete


def test_export_to_the_adm_npz_and_png_grids(tmp_path):
    path = tmp_path / "s.zarr"
    fill(open_samples(path))
    export_npz(path, tmp_path / "samples.npz")
    with np.load(tmp_path / "samples.npz") as npz:
        assert npz["arr_0"].dtype == np.uint8 and npz["arr_0"].shape == (60, *SHAPE)
        np.testing.assert_array_equal(npz["arr_0"], open_store(path).images[:])
        assert npz["arr_1"].tolist() == [i % 5 for i in range(60)]
    grid = np.asarray(Image.open(export_grid(path, tmp_path / "grid.png", per_class=3, scale=1)))
    assert grid.shape == (5 * 6 + 2, 3 * 6 + 2, 3)  # one row per class, 2-pixel gaps
    assert grid[2, 2 + 6, 0] == sample(5)[0][0, 0, 0]  # row 0 is class 0: indices 0, 5, 10
    big = np.asarray(Image.open(export_grid(path, tmp_path / "big.png", per_class=3)))
    assert big.shape == (5 * (64 + 2) + 2, 3 * (64 + 2) + 2, 3)  # 4-pixel images enlarged 16 times, to 64
    np.testing.assert_array_equal(big[2:66, 2:66], sample(0)[0].repeat(16, 0).repeat(16, 1))
    whole = np.asarray(Image.open(export_grid(path, tmp_path / "whole.png", per_class=10**12, scale=1)))
    assert whole.shape == (5 * 6 + 2, 12 * 6 + 2, 3)  # as long as the longest class (12), not 10**12 columns
    for per_class, max_classes in ((0, 10), (3, -1)):
        with pytest.raises(PrakitError, match=f"^--per-class and --max-classes must be at least 1, got {per_class} "):
            export_grid(path, tmp_path / "none.png", per_class=per_class, max_classes=max_classes)


def test_greyscale_exports_as_rgb_and_grids_fill_row_by_row(tmp_path):
    store = SampleStore.open(tmp_path / "g.zarr", num=3, image_shape=(2, 2, 1), attrs={})
    store.write([0, 1, 2], np.arange(12, dtype=np.uint8).reshape(3, 2, 2, 1), [0, 0, 1])
    export_npz(tmp_path / "g.zarr", tmp_path / "g.npz")
    with np.load(tmp_path / "g.npz") as npz:
        assert npz["arr_0"].shape == (3, 2, 2, 3) and (npz["arr_0"][..., 0] == npz["arr_0"][..., 2]).all()
    grid = np.asarray(Image.open(save_grid(np.full((3, 2, 2, 1), 9, np.uint8), tmp_path / "g.png", rows=2, pad=1, scale=1)))
    assert grid.shape == (7, 7) and grid[1, 1] == 9 and grid[4, 4] == 0  # the fourth cell is empty


@pytest.mark.slow
def test_an_export_into_a_folder_is_refused_before_any_work(tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    never = tmp_path / "no-such-run"  # were the source read first, this would be the error
    for args in (["sample", never, "--num", "4", "--out", tmp_path / "s.zarr", "--npz", folder],
                 ["sample", never, "--num", "4", "--out", tmp_path / "s.zarr", "--grid", folder],
                 ["data", "export", never, folder]):
        done = prakit(*map(str, args))
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith(f"prakit: error: cannot write {folder}: it is a folder, and a file goes there")
    assert not (tmp_path / "s.zarr").exists()


def test_a_sample_store_with_a_damaged_progress_record_names_it(tmp_path):
    from prakit.io import DamagedFileError

    store = open_samples(tmp_path / "s.zarr")
    store.write([0, 1], np.stack([sample(0)[0], sample(1)[0]]), [0, 1])
    record = next((tmp_path / "s.zarr" / "progress").glob("*.json"))
    record.write_text('{"done": [[0, 2]]')
    with pytest.raises(DamagedFileError, match=f"^{record} is damaged: not JSON .*; delete .*s.zarr and run the command"):
        open_samples(tmp_path / "s.zarr")
