"""Opt-in: prakit's Inception and FID against torch-fidelity's, on the published weights.

Runs where torch-fidelity is installed and ``$PRAKIT_INCEPTION_WEIGHTS`` names the published
``pt_inception-2015-12-05-6726825d.pth``; skipped, saying which of the two is missing, elsewhere:

    pip install torch-fidelity
    PRAKIT_INCEPTION_WEIGHTS=/path/to/pt_inception-2015-12-05-6726825d.pth pytest tests/test_fid_parity.py

Both networks read the same 2 x 64 seeded random images on the CPU (float32, so TF32 plays no
part). The pool3 features must agree to 1e-3, as must the spatial features of sFID (the output of
``Mixed_6d.branch1x1`` in both ports), and FID between the two sets, each side computed its own way
(torch-fidelity: its moments and its eigenvalues of the covariance product), to 1e-3 relative:
64 images give covariances of rank 63 in 2048 dimensions, whose round-off near-zero eigenvalues
move the trace term by about that much in absolute terms.
"""

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from prakit_eval.inception import WEIGHTS_ENV, WEIGHTS_NAME, Inception, InceptionConfig

from prakit.eval.features import moments
from prakit.eval.frechet import frechet_distance

IMAGES, SIDE, BATCH = 64, 48, 16


def missing() -> list[str]:
    """What this machine lacks for the comparison."""
    lacks = []
    if importlib.util.find_spec("torch_fidelity") is None:
        lacks.append("torch-fidelity is not installed (pip install torch-fidelity)")
    weights = os.environ.get(WEIGHTS_ENV)
    if not weights:
        lacks.append(f"${WEIGHTS_ENV} is not set (the path of {WEIGHTS_NAME})")
    elif not Path(weights).is_file():
        lacks.append(f"${WEIGHTS_ENV} names {weights}, which does not exist")
    return lacks


@pytest.fixture(scope="module")
def extracted():
    """``{set: (prakit's (pool3, spatial), torch-fidelity's (pool3, spatial))}`` of two image sets."""
    if lacks := missing():
        pytest.skip("; ".join(lacks))
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    ours = Inception(InceptionConfig())  # checks the file's SHA-256: a wrong file fails rather than skips
    theirs = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                         feature_extractor_weights_path=os.environ[WEIGHTS_ENV])
    taps = []
    theirs.Mixed_6d.branch1x1.register_forward_hook(lambda module, args, out: taps.append(out.clone()))
    generator = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (IMAGES, SIDE, SIDE, 3), dtype=torch.uint8, generator=generator)
    ramp = torch.linspace(0, 1, SIDE)[None, :, None, None]  # brighter to the bottom: another distribution
    shaded = (torch.randint(0, 128, (IMAGES, SIDE, SIDE, 3), generator=generator) + 127 * ramp).to(torch.uint8)
    result = {}
    for name, images in (("noise", noise), ("shaded", shaded)):
        mine, their = [], []
        for batch in images.split(BATCH):
            pool, _, spatial = ours.forward_with_spatial(batch)
            mine.append((pool, spatial))
            with torch.no_grad():
                (their_pool,) = theirs(batch.permute(0, 3, 1, 2).contiguous())
            their.append((their_pool, taps.pop()[:, :7].permute(0, 2, 3, 1).flatten(1)))
        result[name] = tuple(tuple(torch.cat(part).numpy() for part in zip(*side)) for side in (mine, their))
    return result


def test_pool3_and_spatial_features_agree_with_torch_fidelity(extracted):
    for name, ((pool, spatial), (their_pool, their_spatial)) in extracted.items():
        assert pool.shape == their_pool.shape == (IMAGES, 2048)
        assert spatial.shape == their_spatial.shape == (IMAGES, 2023)
        assert np.abs(pool - their_pool).max() < 1e-3, name
        assert np.abs(spatial - their_spatial).max() < 1e-3, name
        assert pool.std() > 1e-2  # live features, not a degenerate agreement


def test_fid_agrees_with_torch_fidelity(extracted):
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric

    (ours_a, theirs_a), (ours_b, theirs_b) = extracted["noise"], extracted["shaded"]
    ours = frechet_distance(moments(ours_a[0]), moments(ours_b[0]))
    stats = [fid_features_to_statistics(torch.from_numpy(side[0])) for side in (theirs_a, theirs_b)]
    theirs = fid_statistics_to_metric(*stats, verbose=False)[KEY_METRIC_FID]
    assert theirs > 1 and ours == pytest.approx(theirs, rel=1e-3)
