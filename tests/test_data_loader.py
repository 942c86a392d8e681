"""The training loader: the order is a pure function of (seed, step, rank, world_size), epochs
split across ranks without overlap, resumption is exact, workers change nothing."""

import numpy as np
import pytest
import torch
from helpers import write_store
from hypothesis import given, settings
from hypothesis import strategies as st

from prakit.data import Order, TrainLoader
from prakit.errors import PrakitError


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """100 images of 4x4x3 whose pixels spell their index (and a shuffle seed, as prepare records)."""
    index = np.arange(100)
    images = np.zeros((100, 4, 4, 3), np.uint8)
    images[:, :, :2, 0] = index[:, None, None]  # left half: the index
    images[:, :, 2:, 0] = 255 - index[:, None, None]  # right half differs, so a flip shows
    return write_store(tmp_path_factory.mktemp("loader") / "s.zarr", images, index % 7, attrs={"shuffle_seed": 0})


def indices_of(images):
    return images[:, 0, 0, 0].long().tolist()


@settings(max_examples=60, deadline=None)
@given(count=st.integers(1, 300), batch=st.integers(1, 16), world=st.integers(1, 4), block=st.integers(1, 9),
       seed=st.integers(0, 2**32), epoch=st.integers(0, 3))
def test_an_epoch_is_split_across_ranks_without_overlap(count, batch, world, block, seed, epoch):
    if count < batch * world:
        with pytest.raises(PrakitError, match="fewer than one global batch"):
            Order(count, batch_size=batch, seed=seed, world_size=world, block=block)
        return
    orders = [Order(count, batch_size=batch, seed=seed, rank=r, world_size=world, block=block) for r in range(world)]
    steps = orders[0].steps_per_epoch
    seen = np.concatenate([o.plan(epoch * steps + s)[0] for o in orders for s in range(steps)])
    assert len(seen) == steps * batch * world == len(set(seen.tolist()))  # every rank the same steps, no repeats
    assert seen.min() >= 0 and seen.max() < count
    if count == steps * batch * world:
        assert sorted(seen.tolist()) == list(range(count))  # nothing dropped: each index exactly once


def test_epochs_reshuffle_and_blocks_stay_whole():
    order = Order(96, batch_size=16, seed=1, block=8)
    first, second = order.sequence(0), order.sequence(1)
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(96))
    assert first.tolist() != second.tolist()
    assert all(first[i] % 8 == 0 and (np.diff(first[i:i + 8]) == 1).all() for i in range(0, 96, 8))


def test_the_order_is_a_pure_function_of_seed_step_rank_and_world_size():
    plan = lambda **kw: Order(300, batch_size=8, **kw).plan(57)  # noqa: E731
    a, b = plan(seed=3, rank=1, world_size=2), plan(seed=3, rank=1, world_size=2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], plan(seed=4, rank=1, world_size=2)[0])
    assert not np.array_equal(a[0], plan(seed=3, rank=0, world_size=2)[0])


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def test_batches_resume_exactly_and_do_not_depend_on_workers(store):
    loader = TrainLoader(store, batch_size=16, seed=2, hflip=True)
    assert loader.steps_per_epoch == 6 and loader.order.block == 8  # a pre-shuffled store reads whole chunks
    straight = take(loader.batches(), 14)
    resumed = take(TrainLoader(store, batch_size=16, seed=2, hflip=True, num_workers=2).batches(start_step=9), 5)
    for (a, la), (b, lb) in zip(straight[9:], resumed):
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_batches_have_the_promised_types_and_content(store):
    images, labels = next(TrainLoader(store, batch_size=10, seed=0).batches())
    assert images.dtype == torch.uint8 and images.shape == (10, 4, 4, 3)
    assert labels.dtype == torch.int64 and labels.shape == (10,)
    assert labels.tolist() == [i % 7 for i in indices_of(images)]


def test_hflip_mirrors_about_half_of_the_images(store):
    plain = take(TrainLoader(store, batch_size=50, seed=5).batches(), 4)
    flipped = take(TrainLoader(store, batch_size=50, seed=5, hflip=True).batches(), 4)
    mirrored = 0
    for (a, _), (b, _) in zip(plain, flipped):
        same = (a == b).flatten(1).all(1)
        assert torch.equal(b[~same], a[~same].flip(2))
        mirrored += int((~same).sum())
    assert 60 < mirrored < 140


def test_a_store_without_a_shuffle_seed_is_shuffled_per_sample(tmp_path):
    images = np.zeros((32, 2, 2, 3), np.uint8)
    loader = TrainLoader(write_store(tmp_path / "s.zarr", images, np.zeros(32, int)), batch_size=4, seed=0)
    assert loader.order.block == 1


def test_a_batch_larger_than_the_store_is_a_clear_error(store):
    with pytest.raises(PrakitError, match="holds 100 samples, fewer than one global batch"):
        TrainLoader(store, batch_size=30, seed=0, world_size=4)
