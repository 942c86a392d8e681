"""``prepare`` and ``prakit data``: an image-folder tree with bad files round-trips with the exact
ADM pixels, a killed preparation resumes to the same store, settings are checked on resume."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from prakit_datasets.digits import DigitsConfig
from prakit_datasets.imagefolder import ImageFolderConfig

from prakit.config.schema import DataConfig
from prakit.data import StoreError, open_store, prepare
from prakit.data.prepare import ensure_store
from prakit.errors import ConfigError, PrakitError
from prakit.locks import making
from prakit.testing import DatasetContract

SIZE = 8


def center_crop_arr(pil_image, image_size):
    """guided-diffusion's reference (image_datasets.py, verbatim): the pixels to reproduce."""
    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC)
    arr = np.array(pil_image)
    crop_y = (arr.shape[0] - image_size) // 2
    crop_x = (arr.shape[1] - image_size) // 2
    return arr[crop_y : crop_y + image_size, crop_x : crop_x + image_size]


def adm_load(path, size=SIZE):
    with Image.open(path) as image:
        image.load()
        return center_crop_arr(image.convert("RGB"), size)


def noise(rng, h, w, channels=3):
    return rng.integers(0, 256, (h, w, channels), dtype=np.uint8)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Classes ant, bee, cat (empty) and dog, with every kind of awkward file in bee."""
    root = tmp_path_factory.mktemp("tree")
    rng = np.random.default_rng(0)
    for name in ("ant", "bee", "cat", "dog"):
        (root / name).mkdir()
    Image.fromarray(noise(rng, 37, 53)).save(root / "ant" / "a.jpg", quality=95)
    Image.fromarray(noise(rng, 20, 20)).save(root / "ant" / "b.png")
    Image.fromarray(noise(rng, 12, 40)).save(root / "ant" / "c.JPEG")
    Image.fromarray(noise(rng, 9, 9)).save(root / "ant" / ".hidden.png")
    Image.fromarray(noise(rng, 30, 24, 4), "RGBA").convert("CMYK").save(root / "bee" / "cmyk.jpg")
    Image.fromarray(noise(rng, 25, 17, 1)[..., 0], "L").save(root / "bee" / "grey.png")
    Image.fromarray(noise(rng, 16, 19, 4), "RGBA").save(root / "bee" / "alpha.png")
    Image.fromarray(noise(rng, 33, 18)).convert("P").save(root / "bee" / "palette.gif")
    (root / "bee" / "corrupt.jpg").write_bytes(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
    (root / "bee" / "readme.txt").write_text("not an image")
    Image.fromarray(noise(rng, 40, 40)).save(root / "bee" / "truncated.jpg")
    whole = (root / "bee" / "truncated.jpg").read_bytes()
    (root / "bee" / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "bee" / "nested").mkdir()
    Image.fromarray(noise(rng, 10, 10)).save(root / "bee" / "nested" / "x.png")
    Image.fromarray(noise(rng, 64, 48)).save(root / "dog" / "d.jpg")
    Image.fromarray(noise(rng, 10, 10)).save(root / "stray.png")
    return root


READABLE = ["ant/a.jpg", "ant/b.png", "ant/c.JPEG", "bee/alpha.png", "bee/cmyk.jpg", "bee/grey.png",
            "bee/palette.gif", "dog/d.jpg"]
LABELS = [0, 0, 0, 1, 1, 1, 1, 3]


def test_an_image_folder_round_trips_with_the_exact_adm_pixels(tree, tmp_path):
    report = prepare(ImageFolderConfig(root=str(tree)), tmp_path / "s.zarr", size=SIZE, workers=0, progress=False)
    store = open_store(tmp_path / "s.zarr")
    np.testing.assert_array_equal(store.images[:], np.stack([adm_load(tree / f) for f in READABLE]))
    assert store.labels[:].tolist() == LABELS  # dog keeps label 3 although cat is empty
    assert store.class_names == ("ant", "bee", "cat", "dog")
    assert report.count == len(store) == 8 and report.items == 11
    assert report.class_counts == (3, 4, 0, 1) and report.empty_classes == ("cat",)
    skipped = {s.reason.split(":")[1].strip(): s.reason for s in report.skipped}
    assert set(skipped) == {"bee/corrupt.jpg", "bee/readme.txt", "bee/truncated.jpg"}
    assert all("not a readable image" in reason for reason in skipped.values())
    assert any("stray.png" in note for note in report.notes) and any("bee/nested/" in note for note in report.notes)
    text = report.format()
    assert "8 images of 8x8x3 in 4 classes from 11 imagefolder items" in text
    assert "skipped 3 unreadable item(s)" in text and "classes without images" in text and "cat" in text
    assert store.attrs["skipped"] == [{"item": s.item, "reason": s.reason} for s in report.skipped]
    assert store.attrs["preprocessing"] == {"method": "adm-center-crop", "size": SIZE, "channels": 3}


def test_workers_and_the_shuffle_seed_change_only_the_order(tree, tmp_path):
    plain = prepare(ImageFolderConfig(root=str(tree)), tmp_path / "a.zarr", size=SIZE, workers=0, progress=False)
    shuffled = prepare(ImageFolderConfig(root=str(tree)), tmp_path / "b.zarr", size=SIZE, workers=2, shuffle_seed=3, progress=False)
    again = prepare(ImageFolderConfig(root=str(tree)), tmp_path / "c.zarr", size=SIZE, workers=1, shuffle_seed=3, progress=False)
    a, b, c = (open_store(tmp_path / n) for n in ("a.zarr", "b.zarr", "c.zarr"))
    np.testing.assert_array_equal(b.images[:], c.images[:])
    assert shuffled.fingerprint == again.fingerprint != plain.fingerprint
    assert b.labels[:].tolist() != a.labels[:].tolist()
    key = lambda store: sorted(zip(store.labels[:].tolist(), store.images[:].reshape(len(store), -1).tolist()))  # noqa: E731
    assert key(a) == key(b)
    assert b.attrs["shuffle_seed"] == 3 and a.attrs["shuffle_seed"] is None


def test_greyscale_output(tree, tmp_path):
    prepare(ImageFolderConfig(root=str(tree)), tmp_path / "g.zarr", size=SIZE, channels=1, workers=0, progress=False)
    store = open_store(tmp_path / "g.zarr")
    assert store.image_shape == (SIZE, SIZE, 1)
    with Image.open(tree / "ant" / "a.jpg") as image:
        expected = center_crop_arr(image.convert("L"), SIZE)
    np.testing.assert_array_equal(store.images[0, ..., 0], expected)


def test_a_finished_store_is_not_prepared_again(tree, tmp_path):
    cfg = ImageFolderConfig(root=str(tree))
    first = prepare(cfg, tmp_path / "s.zarr", size=SIZE, workers=0, progress=False)
    second = prepare(cfg, tmp_path / "s.zarr", size=SIZE, workers=0, progress=False)
    assert second.resumed_from == second.items and "already finished" in second.format()
    assert second.fingerprint == first.fingerprint


def test_other_settings_on_an_existing_store_are_refused(tree, tmp_path):
    cfg = ImageFolderConfig(root=str(tree))
    prepare(cfg, tmp_path / "s.zarr", size=SIZE, workers=0, progress=False)
    with pytest.raises(StoreError, match=r"prepared with other settings \(preprocessing: .*delete it to start over"):
        prepare(cfg, tmp_path / "s.zarr", size=SIZE * 2, workers=0, progress=False)
    with pytest.raises(StoreError, match="shuffle_seed: None there, 1 now"):
        prepare(cfg, tmp_path / "s.zarr", size=SIZE, shuffle_seed=1, workers=0, progress=False)


def test_a_bad_source_is_a_clear_error(tmp_path):
    with pytest.raises(PrakitError, match="is not a folder"):
        prepare(ImageFolderConfig(root=str(tmp_path / "none")), tmp_path / "s.zarr", size=SIZE)
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "x.png").write_bytes(b"")
    with pytest.raises(PrakitError, match="has no class folders"):
        prepare(ImageFolderConfig(root=str(tmp_path / "flat")), tmp_path / "s.zarr", size=SIZE)
    (tmp_path / "junk" / "a").mkdir(parents=True)
    (tmp_path / "junk" / "a" / "x.jpg").write_text("junk")
    with pytest.raises(PrakitError, match="no item of the imagefolder source could be read"):
        prepare(ImageFolderConfig(root=str(tmp_path / "junk")), tmp_path / "j.zarr", size=SIZE, workers=0, progress=False)


def test_a_failed_preparation_leaves_nothing_that_refuses_the_corrected_command(tmp_path):
    source = tmp_path / "junk"
    (source / "a").mkdir(parents=True)
    (source / "a" / "x.jpg").write_text("junk")
    out = tmp_path / "j.zarr"
    with pytest.raises(PrakitError, match="no item of the imagefolder source could be read"):
        prepare(ImageFolderConfig(root=str(source)), out, size=SIZE, workers=0, progress=False)
    assert not out.exists()
    Image.fromarray(noise(np.random.default_rng(0), 9, 9)).save(source / "a" / "y.png")
    made = prepare(ImageFolderConfig(root=str(source)), out, size=SIZE * 2, workers=0, progress=False)
    assert made.count == 1 and open_store(out).image_shape == (SIZE * 2, SIZE * 2, 3)


def test_a_negative_worker_count_is_refused_before_anything_is_written(tree, tmp_path):
    with pytest.raises(PrakitError, match=r"^workers must be 0 \(none: read in this process\) or more, got -1$"):
        prepare(ImageFolderConfig(root=str(tree)), tmp_path / "s.zarr", size=SIZE, workers=-1, progress=False)
    assert not (tmp_path / "s.zarr").exists()


def prakit(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "prakit", *map(str, args)], capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory):
    """400 JPEGs in three classes plus a corrupt file: long enough to kill a run midway."""
    root = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(1)
    for i in range(400):
        folder = root / f"class{i % 3}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(noise(rng, 64, 64)).save(folder / f"{i:04d}.jpg", quality=90)
    (root / "class1" / "0100.jpg").write_bytes(b"\xff\xd8 broken")
    return root


@pytest.mark.slow
def test_a_killed_preparation_resumes_to_the_uninterrupted_result(big_tree, tmp_path):
    def command(out, workers):
        return ["data", "prepare", "imagefolder", big_tree, out, "--size", SIZE, "--shard-size", 16,
                "--shuffle-seed", 5, "--workers", workers, "--no-progress"]

    whole, cut = tmp_path / "whole.zarr", tmp_path / "cut.zarr"
    done = prakit(*command(whole, 2))
    assert done.returncode == 0, done.stderr

    run = subprocess.Popen([sys.executable, "-m", "prakit", *map(str, command(cut, 0))],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record = cut / "progress" / "prepare.json"
    deadline = time.monotonic() + 60
    while run.poll() is None and time.monotonic() < deadline:
        if record.exists() and '"count": 0,' not in record.read_text():  # at least one shard written
            os.kill(run.pid, signal.SIGKILL)
            break
        time.sleep(0.001)
    assert run.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    with pytest.raises(StoreError, match="unfinished"):
        open_store(cut)

    resumed = prakit(*command(cut, 1))
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed after" in resumed.stdout
    a, b = open_store(whole), open_store(cut)
    np.testing.assert_array_equal(a.images[:], b.images[:])
    np.testing.assert_array_equal(a.labels[:], b.labels[:])
    assert a.attrs["fingerprint"] == b.attrs["fingerprint"]
    assert a.attrs["skipped"] == b.attrs["skipped"] and len(a.attrs["skipped"]) == 1
    assert not (cut / "progress").exists() and not list(cut.rglob("*.partial"))
    b.verify()


@pytest.mark.slow
def test_info_and_export_on_the_command_line(tree, tmp_path):
    out = tmp_path / "s.zarr"
    made = prakit("data", "prepare", "imagefolder", tree, out, "--size", SIZE, "--workers", 0, "--no-progress")
    assert made.returncode == 0, made.stderr
    assert "8 images of 8x8x3" in made.stdout and "bee/corrupt.jpg" in made.stdout
    info = prakit("data", "info", out)
    assert info.returncode == 0, info.stderr
    assert "8 x 8x8x3 uint8, chunks of 8" in info.stdout and "4: ant, bee, cat, dog (0-4 images each)" in info.stdout
    assert open_store(out).attrs["fingerprint"] in info.stdout
    exported = prakit("data", "export", out, tmp_path / "s.npz")
    assert exported.returncode == 0, exported.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "s.npz")["arr_0"], open_store(out).images[:])
    wrong = prakit("data", "export", out, tmp_path / "s.jpg")
    assert wrong.returncode == 2 and "name it .npz or .png" in wrong.stderr


def test_source_fields_on_the_command_line():
    from prakit.cli.data import source_config

    cfg = source_config("photo_crops", [], ["seed=3", "photos=['camera', 'coins']"])
    assert (cfg.seed, cfg.photos) == (3, ("camera", "coins"))
    assert source_config("imagefolder", ["/some/where"]).root == "/some/where"
    with pytest.raises(ConfigError, match="imagefolder takes ROOT before the output store"):
        source_config("imagefolder", [])
    with pytest.raises(ConfigError, match="crop"):
        source_config("photo_crops", [], ["crop=0"])


class TestImageFolderContract(DatasetContract):
    config = ImageFolderConfig(root=".")  # each test replaces it with a config over a fresh two-class tree

    @pytest.fixture(autouse=True)
    def _tree(self, tmp_path):
        rng = np.random.default_rng(2)
        for name in ("x", "y"):
            (tmp_path / name).mkdir()
            Image.fromarray(noise(rng, 11, 13)).save(tmp_path / name / "0.png")
        self.config = ImageFolderConfig(root=str(tmp_path))


@pytest.mark.slow
def test_two_preparations_of_one_store_take_turns(tmp_path):
    # what the jobs of an ablation array do when their shared store does not exist yet
    command = [sys.executable, "-m", "prakit", "data", "prepare", "digits", str(tmp_path / "d.zarr"), "--size", "8",
               "--workers", "0", "--no-progress"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in outputs]
    assert sum("already finished" in out for out, _ in outputs) == 1
    open_store(tmp_path / "d.zarr").verify()


def test_16_bit_greyscale_images_are_scaled_to_8_bits_not_saturated(tmp_path):
    from prakit import registry

    (tmp_path / "a").mkdir()
    wide = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000  # 0 .. 63,000 of 65,535
    Image.fromarray(wide).save(tmp_path / "a" / "wide.png")
    assert Image.open(tmp_path / "a" / "wide.png").mode == "I;16"
    image, _ = registry.build(ImageFolderConfig(root=str(tmp_path)))[0]
    assert image.shape == (8, 8, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[..., 0], np.rint(wide / 257).astype(np.uint8))


def test_links_that_do_not_resolve_are_noted_and_not_read(tmp_path):
    root = tmp_path / "tree"
    (root / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "a" / "ok.png")
    (root / "a" / "self.png").symlink_to("self.png")  # a link to itself
    (root / "a" / "gone.png").symlink_to("missing.png")
    (root / "loop").symlink_to("loop")  # beside the class folders
    report = prepare(ImageFolderConfig(root=str(root)), tmp_path / "s.zarr", size=SIZE, workers=0, progress=False)
    assert len(open_store(tmp_path / "s.zarr")) == 1 and report.items == 1
    notes = "\n".join(report.notes)
    assert "a/self.png is a link that does not resolve" in notes and "a/gone.png is a link to nothing" in notes
    assert "loop" in notes


def test_a_job_that_finds_the_store_half_made_by_another_waits_its_turn(tmp_path):
    """Jobs of a sweep start at once on a missing store: one that sees the store's folder before its
    zarr.json (another job is making it) waits for that job instead of calling the store damaged."""
    data = DataConfig(store=str(tmp_path / "digits.zarr"), image_size=8, num_classes=10, source=DigitsConfig())
    store = Path(data.store)
    making_it, stop = threading.Event(), threading.Event()

    def another_job():
        with making(store):
            store.mkdir()  # its first write: the folder, no zarr.json yet
            making_it.set()
            stop.wait(30)
            store.rmdir()  # it stopped before storing a sample, which leaves no store

    other = threading.Thread(target=another_job)
    other.start()
    making_it.wait(30)
    threading.Timer(0.5, stop.set).start()
    ensure_store(data)
    other.join()
    assert stop.is_set() and len(open_store(store)) == 1797
