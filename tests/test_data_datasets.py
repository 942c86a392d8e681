"""The built-in datasets that need no download: digits and photo_crops pass the dataset
contract, are deterministic given their seed, and prepare at any size."""

import subprocess
import sys

import numpy as np
import pytest
from prakit_datasets.digits import DigitsConfig
from prakit_datasets.photo_crops import PhotoCropsConfig

from prakit import registry
from prakit.config import unstructure
from prakit.data import open_store, prepare
from prakit.data.preprocess import center_crop
from prakit.data.store import json_data
from prakit.testing import DatasetContract


class TestDigits(DatasetContract):
    config = DigitsConfig()


class TestPhotoCrops(DatasetContract):
    config = PhotoCropsConfig(per_photo=3, crop=16)


class TestPhotoCropsOfGreyAndAlphaPhotos(DatasetContract):
    config = PhotoCropsConfig(photos=("camera", "logo"), per_photo=2, crop=300, seed=9)


def test_digits_are_the_bundled_8x8_digits_in_full_range():
    digits = registry.build(DigitsConfig())
    assert len(digits) == 1797 and digits.class_names == tuple("0123456789")
    image, label = digits[0]
    assert image.shape == (8, 8, 1) and label == 0
    assert digits.images.min() == 0 and digits.images.max() == 255


def test_photo_crops_are_deterministic_given_their_seed():
    a, b = registry.build(PhotoCropsConfig(per_photo=4, seed=1)), registry.build(PhotoCropsConfig(per_photo=4, seed=1))
    c = registry.build(PhotoCropsConfig(per_photo=4, seed=2))
    assert len(a) == 7 * 4 and a.class_names[0] == "astronaut"
    assert all(np.array_equal(a[i][0], b[i][0]) for i in range(len(a)))
    assert not all(np.array_equal(a[i][0], c[i][0]) for i in range(len(a)))
    assert [a[i][1] for i in range(len(a))] == [i // 4 for i in range(28)]
    assert a[5][0].shape == (64, 64, 3)


def test_photo_crops_config_is_validated():
    with pytest.raises(ValueError, match="photos"):
        PhotoCropsConfig(photos=("eagle",))  # needs a download: not offered
    with pytest.raises(ValueError, match="repeat"):
        PhotoCropsConfig(photos=("coffee", "coffee"))
    with pytest.raises(ValueError, match="crop"):
        PhotoCropsConfig(crop=301)


def test_the_size_of_a_store_comes_from_prepare_alone(tmp_path):
    report = prepare(DigitsConfig(), tmp_path / "d.zarr", size=16, workers=0, progress=False)
    store = open_store(tmp_path / "d.zarr")
    assert report.count == 1797 and store.image_shape == (16, 16, 3)
    digits = registry.build(DigitsConfig())
    np.testing.assert_array_equal(store.images[:3], np.stack([center_crop(digits[i][0], 16) for i in range(3)]))
    assert store.labels[:10].tolist() == digits.labels[:10].tolist()


@pytest.mark.slow
def test_prepare_photo_crops_on_the_command_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "prakit", "data", "prepare", "photo_crops", str(tmp_path / "p.zarr"), "--size", "8",
         "--set", "per_photo=3", "--set", "seed=4", "--workers", "0", "--no-progress"],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    store = open_store(tmp_path / "p.zarr")
    assert len(store) == 21 and store.image_shape == (8, 8, 3)
    assert store.attrs["source"] == json_data(unstructure(PhotoCropsConfig(per_photo=3, seed=4)))
    bad = subprocess.run([sys.executable, "-m", "prakit", "data", "prepare", "photo_crops", str(tmp_path / "q.zarr"),
                          "--size", "8", "--set", "crop=0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "crop" in bad.stderr and "Traceback" not in bad.stderr
