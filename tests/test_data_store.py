"""The store format: round trips over shapes and chunkings, fingerprints, and clear errors for
stores that are missing, of another format, unfinished or damaged."""

import json
import subprocess
import sys

import numpy as np
import pytest
import zarr
from helpers import write_store
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prakit.data import FORMAT_VERSION, StoreError, open_store
from prakit.data.digest import MODULUS, content_digests, digest_sum, fold
from prakit.data.store import create_store, runs


def random_images(n, size, channels, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8), rng.integers(0, 5, n)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(1, 40), size=st.integers(1, 6), channels=st.sampled_from([1, 3]),
    chunk=st.integers(1, 8), chunks_per_shard=st.integers(1, 4), data=st.data(),
)
def test_round_trip_over_shapes_and_chunkings(tmp_path_factory, n, size, channels, chunk, chunks_per_shard, data):
    images, labels = random_images(n, size, channels, seed=n)
    path = write_store(tmp_path_factory.mktemp("s") / "s.zarr", images, labels, chunk=chunk, shard=chunk * chunks_per_shard)
    store = open_store(path)
    assert len(store) == n and store.image_shape == (size, size, channels)
    assert (store.chunk_length, store.shard_length) == (chunk, chunk * chunks_per_shard)
    np.testing.assert_array_equal(store.images[:], images)
    np.testing.assert_array_equal(store.labels[:], labels)
    indices = data.draw(st.lists(st.integers(0, n - 1), max_size=2 * n))  # any order, repeats allowed
    got_images, got_labels = store.read(indices)
    np.testing.assert_array_equal(got_images, images[indices])
    np.testing.assert_array_equal(got_labels, labels[indices])
    store.verify()


def test_the_group_attributes_hold_the_facts(tmp_path):
    images, labels = random_images(10, 4, 3)
    attrs = open_store(write_store(tmp_path / "s.zarr", images, labels, attrs={"source": {"name": "x"}})).attrs
    assert attrs["format_version"] == FORMAT_VERSION
    assert (attrs["count"], attrs["resolution"], attrs["channels"], attrs["source"]) == (10, 4, 3, {"name": "x"})
    assert len(attrs["fingerprint"]) == 32 and attrs["files"]
    meta = json.loads((tmp_path / "s.zarr" / "zarr.json").read_text())
    assert set(meta["consolidated_metadata"]["metadata"]) == {"images", "labels"}


def test_the_fingerprint_does_not_depend_on_how_the_samples_were_split():
    images, labels = random_images(9, 3, 3)
    whole = digest_sum(0, images, labels)
    assert whole == (digest_sum(0, images[:4], labels[:4]) + digest_sum(4, images[4:], labels[4:])) % MODULUS
    moved = fold(1, content_digests(images, labels))  # the same content one row later
    assert moved != whole


def test_runs_of_consecutive_indices_in_order():
    assert runs(np.array([3, 4, 5, 9, 1, 2, 2])) == [(0, 3), (3, 1), (4, 2), (6, 1)]
    assert runs(np.array([], dtype=np.int64)) == []


def test_out_of_range_indices_are_refused(tmp_path):
    store = open_store(write_store(tmp_path / "s.zarr", *random_images(5, 2, 1)))
    with pytest.raises(IndexError, match=r"\[0, 5\)"):
        store.read([0, 5])


@pytest.fixture
def store_path(tmp_path):
    return write_store(tmp_path / "s.zarr", *random_images(40, 4, 3), chunk=4, shard=8)


def set_attr(path, key, value):
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"][key] = value
    (path / "zarr.json").write_text(json.dumps(meta))


def test_a_missing_store(tmp_path):
    with pytest.raises(StoreError, match="no store at .*create one with `prakit data prepare`"):
        open_store(tmp_path / "nothing.zarr")


def test_a_folder_that_is_not_a_store(tmp_path):
    with pytest.raises(StoreError, match=r"not a zarr store \(no zarr.json\)"):
        open_store(tmp_path)


def test_a_zarr_v2_store(tmp_path):
    zarr.open_group(tmp_path / "v2.zarr", mode="w", zarr_format=2)
    with pytest.raises(StoreError, match="is a zarr v2 store; prakit reads zarr v3 stores"):
        open_store(tmp_path / "v2.zarr")


def test_a_zarr_store_that_is_not_a_prakit_store(tmp_path):
    zarr.open_group(tmp_path / "other.zarr", mode="w").attrs["hello"] = 1
    with pytest.raises(StoreError, match="not a prakit image store"):
        open_store(tmp_path / "other.zarr")


def test_an_older_format_version_is_refused(store_path):
    set_attr(store_path, "format_version", FORMAT_VERSION - 1)
    with pytest.raises(StoreError, match=rf"format version {FORMAT_VERSION - 1}, older than .* re-create it with `prakit data prepare`"):
        open_store(store_path)


def test_a_newer_format_version_asks_for_an_upgrade(store_path):
    set_attr(store_path, "format_version", FORMAT_VERSION + 1)
    with pytest.raises(StoreError, match="newer than .*upgrade prakit"):
        open_store(store_path)


def test_an_unfinished_store(tmp_path):
    create_store(tmp_path / "u.zarr", count=4, image_shape=(2, 2, 3), shard=8, attrs={"kind": "dataset"})
    with pytest.raises(StoreError, match="unfinished.*run the same `prakit data prepare` command again to finish it, or delete it to start over"):
        open_store(tmp_path / "u.zarr")


def test_a_truncated_shard(store_path):
    shard = store_path / "images" / "c" / "2" / "0" / "0" / "0"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match=f"truncated or damaged: images/c/2/0/0/0 has {len(data) // 2} bytes, expected {len(data)}"):
        open_store(store_path)


def test_a_missing_shard(store_path):
    (store_path / "labels" / "c" / "1").unlink()
    with pytest.raises(StoreError, match="is truncated: labels/c/1 is missing"):
        open_store(store_path)


def test_verify_catches_content_that_no_longer_matches(store_path):
    set_attr(store_path, "fingerprint", "0" * 32)
    with pytest.raises(StoreError, match="does not match its fingerprint"):
        open_store(store_path).verify()


def test_the_cli_reports_a_damaged_store_in_one_line(store_path):
    (store_path / "images" / "c" / "0" / "0" / "0" / "0").unlink()
    out = subprocess.run([sys.executable, "-m", "prakit", "data", "info", str(store_path)], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("prakit: error: ") and "is truncated: images/c/0/0/0/0 is missing" in out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 1])
def test_a_shard_overwritten_with_random_bytes_is_a_store_corrupt_error(store_path, workers):
    from prakit.data import TrainLoader
    from prakit.errors import PrakitError

    shard = store_path / "images" / "c" / "2" / "0" / "0" / "0"  # samples 16..23
    shard.write_bytes(np.random.default_rng(0).integers(0, 256, shard.stat().st_size, dtype=np.uint8).tobytes())
    store = open_store(store_path)  # sizes still match: only reading the samples can tell
    with pytest.raises(StoreError, match=r"store corrupt at shard 2 \(samples from 16\): .*re-create it"):
        store.verify()
    batches = TrainLoader(store_path, batch_size=40, seed=0, num_workers=workers).batches()
    with pytest.raises(PrakitError) as error:
        next(batches)
    assert str(error.value).count("\n") == 0 and "store corrupt at shard 2" in str(error.value)
    info = subprocess.run([sys.executable, "-m", "prakit", "data", "info", str(store_path)], capture_output=True, text=True)
    assert info.returncode == 0 and "metadata checked only; --verify re-reads every sample" in info.stdout
    verify = subprocess.run([sys.executable, "-m", "prakit", "data", "info", str(store_path), "--verify"],
                            capture_output=True, text=True)
    assert verify.returncode == 2 and verify.stderr.count("\n") == 1 and "store corrupt at shard 2" in verify.stderr


@pytest.mark.slow
def test_a_labels_shard_overwritten_with_random_bytes_is_a_store_corrupt_error(store_path):
    from prakit.data import export_npz

    shard = store_path / "labels" / "c" / "2"  # samples 16..23
    shard.write_bytes(np.random.default_rng(0).integers(0, 256, shard.stat().st_size, dtype=np.uint8).tobytes())
    corrupt = r"store corrupt at shard 2 \(samples from 16\): .*re-create it"
    with pytest.raises(StoreError, match=corrupt):
        open_store(store_path).read([0])
    with pytest.raises(StoreError, match=corrupt):
        open_store(store_path).verify()
    with pytest.raises(StoreError, match=corrupt):
        export_npz(store_path, store_path.with_suffix(".npz"))
    for verify in ([], ["--verify"]):
        info = subprocess.run([sys.executable, "-m", "prakit", "data", "info", str(store_path), *verify],
                              capture_output=True, text=True)
        assert info.returncode == 2 and info.stderr.count("\n") == 1 and "store corrupt at shard 2" in info.stderr


@pytest.mark.parametrize("text, problem", [
    ("{", "not JSON"), ("", "empty"), ('{"attributes": [1]}', "attributes is a list where an object belongs"),
])
def test_damaged_group_metadata_is_named_with_the_fix(store_path, text, problem):
    from prakit.io import DamagedFileError

    (store_path / "zarr.json").write_text(text)
    with pytest.raises(DamagedFileError, match=f"^{store_path / 'zarr.json'} is damaged: {problem}.*; copy the store "
                                               "again or re-create it$"):
        open_store(store_path)


def test_a_damaged_progress_record_is_named_with_the_fix(tmp_path):
    from prakit.data import journal
    from prakit.io import DamagedFileError

    create_store(tmp_path / "u.zarr", count=4, image_shape=(2, 2, 3), shard=8, attrs={"kind": "dataset"})
    journal.write(tmp_path / "u.zarr", "prepare", {"count": 0})
    with pytest.raises(DamagedFileError, match=r"prepare.json is damaged: consumed is missing; delete .*u.zarr and run"):
        journal.read(tmp_path / "u.zarr", "prepare", {"count": int, "consumed": int})
    (tmp_path / "u.zarr" / "progress" / "prepare.json").write_bytes(b"\xff")
    with pytest.raises(DamagedFileError, match="is damaged: not UTF-8 text"):
        journal.read(tmp_path / "u.zarr", "prepare", {})
    assert journal.read(tmp_path / "u.zarr", "other", {}) is None
